"""Every constant of the system, in one place.

Frozen, keyword-only dataclasses grouped by role (front-ends, networks,
teachers, SPL/relevance, sampling, training, deployment); the one teacher
registry is ``TEACHERS``. Derived sizes are properties, never typed in by hand.
Library code receives these objects as arguments; nothing else in the project
hard-codes a sample rate, FFT size or budget.

Sources: ``../shared/docs/reference.md`` (the authors' code, sections in
brackets below) and ``../shared/models/AISFX.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "KapreMelParams", "AisfxFrontendParams", "L3_MEL256", "STUDENT_MEL64", "AISFX_FRONTEND",
    "ConvNetParams", "L3_NET", "AISFX_NET", "STUDENT_FILTERS", "STUDENT_EMB_DIMS",
    "STUDENT_PARAM_COUNTS", "TeacherSpec", "L3_TEACHER", "AISFX_TEACHER", "AISFX_TEACHER_1S",
    "TEACHERS", "AISFX_WINDOWS",
    "DISTILL_TEACHER_WINDOW", "AISFX_NATIVE_WINDOW", "teacher_window_name", "aisfx_teacher_spec",
    "teacher_spec", "TEACHER_NAMES", "DEFAULT_TEACHER", "TEACHER_BATCH_SIZE", "TEACHER_OPTIONS",
    "TEACHER_WINDOW_TOLERANCE_SECONDS", "check_teacher_window", "AisfxWeightsSource",
    "AISFX_WEIGHTS", "OpenL3WeightsSource", "OPENL3_WEIGHTS", "StudentSpec", "student_spec",
    "SplParams", "SPL", "RelevanceParams", "RELEVANCE", "SamplingParams", "SAMPLING",
    "ReductionParams", "REDUCTION", "TrainParams", "TRAIN", "BoardBudget", "BOARDS",
    "DEFAULT_BOARD", "QuantParams", "QUANT", "DownstreamParams", "DOWNSTREAM", "DOWNSTREAM_QUICK",
    "SynthParams", "SYNTH", "SONYC_COARSE_CLASSES", "SPARSE_L3_SPARSITIES", "API", "ApiParams",
    "INT16_SCALE", "AudioLimitsParams", "AUDIO_LIMITS", "ListingParams", "LISTING", "AudioIOParams",
    "AUDIO_IO", "AWeightingParams", "A_WEIGHTING", "SidecarParams", "SIDECAR", "CapacityParams",
    "CAPACITY", "TrainingSetParams", "TRAINING_SET", "RunParams", "RUN", "ExperimentParams",
    "EXPERIMENT", "ReportParams", "REPORT", "SensorParams",
    "SENSORS", "EmbedParams", "EMBED",
]


# --------------------------------------------------------------------------- front-ends
@dataclass(frozen=True, kw_only=True)
class KapreMelParams:
    """kapre 0.1.4 ``Melspectrogram`` as used by L3-Net and the SEA students [ref (a)].

    STFT power through a periodic-Hann DFT with TF ``'same'`` padding
    (ceil(N / hop) frames), HTK mel filterbank with Slaney area norm applied to
    the power, square root, ``10*log10(max(x, amin))``, per-example max
    subtracted, floored at ``-dynamic_range_db``.
    """

    sample_rate: int
    """Input sample rate in Hz."""
    n_dft: int
    """DFT size (and window length) in samples."""
    hop_length: int
    """Hop between STFT frames in samples."""
    n_mels: int
    """Number of mel bands."""
    fmin: float = 0.0
    """Lowest mel edge in Hz."""
    fmax: float | None = None
    """Highest mel edge in Hz; ``None`` means ``sample_rate / 2``."""
    power_melgram: float = 1.0
    """Exponent applied to the mel-weighted *amplitude* (1.0 = sqrt of power)."""
    amin: float = 1e-10
    """Floor before the logarithm."""
    dynamic_range_db: float = 80.0
    """Values are clipped to ``[-dynamic_range_db, 0]`` after max subtraction."""

    @property
    def f_max(self) -> float:
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_freqs(self) -> int:
        return self.n_dft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` with TF 'same' padding."""
        return math.ceil(n_samples / self.hop_length)

    def same_padding(self, n_samples: int) -> tuple[int, int]:
        """(left, right) zero padding of TF 'same' for a conv of width n_dft."""
        total = max((self.n_frames(n_samples) - 1) * self.hop_length + self.n_dft - n_samples, 0)
        return total // 2, total - total // 2


L3_MEL256 = KapreMelParams(sample_rate=48_000, n_dft=2048, hop_length=242, n_mels=256)
"""The teacher's (L3-Net audio, mel256) front-end: 1 s -> (256, 199)."""

STUDENT_MEL64 = KapreMelParams(sample_rate=8_000, n_dft=1024, hop_length=160, n_mels=64)
"""The SEA student front-end: 1 s at 8 kHz -> (64, 50)."""


@dataclass(frozen=True, kw_only=True)
class AisfxFrontendParams:
    """The aisfx teacher front-end (essentia training path, AISFX.md)."""

    sample_rate: int = 44_100
    frame_length: int = 2048
    """STFT frame length; symmetric Hann of this length."""
    hop_length: int = 1024
    n_mels: int = 96
    fmin: float = 0.0
    fmax: float = 22_050.0
    log_scale: float = 1e4
    """log10(log_scale * x + 1) compression."""
    norm_max: float = 9.457798957824707
    """The log-mel is divided by this (the training set maximum)."""
    block_frames: int = 100
    """Frames per network input block (101,376 samples at 44.1 kHz = 2.30 s; AISFX.md rounds to 2.32 s)."""
    block_hop_frames: int = 50

    @property
    def n_freqs(self) -> int:
        return self.frame_length // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frame i starts at ``i*hop - hop`` (zero padded): ceil(N/hop) + 1 frames."""
        return math.ceil(n_samples / self.hop_length) + 1

    @property
    def window_samples(self) -> int:
        """Samples that give exactly ``block_frames`` frames (101,376 at 44.1 kHz)."""
        return (self.block_frames - 1) * self.hop_length

    @property
    def hop_samples(self) -> int:
        return self.block_hop_frames * self.hop_length


AISFX_FRONTEND = AisfxFrontendParams()


# --------------------------------------------------------------------------- networks
@dataclass(frozen=True, kw_only=True)
class ConvNetParams:
    """A 4-block VGG-ish conv trunk (L3-Net audio, SEA students, aisfx)."""

    filters: tuple[int, int, int, int]
    kernel_size: int = 3
    l2: float = 1e-5
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.99
    pool: tuple[int, int] = (2, 2)

    @property
    def emb_dim(self) -> int:
        return self.filters[-1]


L3_NET = ConvNetParams(filters=(64, 128, 256, 512))
"""L3-Net audio trunk [ref (b)]: 4,689,860 parameters without the front-end."""

AISFX_NET = ConvNetParams(filters=(64, 128, 256, 512), l2=0.0, bn_epsilon=1e-5, bn_momentum=0.9)
"""aisfx X-Sequential-CE trunk (AISFX.md): no conv bias, BN eps 1e-5."""

STUDENT_FILTERS: dict[int, tuple[int, int, int, int]] = {
    512: (64, 128, 256, 512),
    256: (32, 64, 128, 256),
    128: (32, 64, 128, 128),
    64: (32, 64, 128, 64),
}
"""Block filters of each SEA student [ref (c)], keyed by embedding dim."""

STUDENT_EMB_DIMS = tuple(sorted(STUDENT_FILTERS, reverse=True))

STUDENT_PARAM_COUNTS: dict[int, tuple[int, int]] = {
    512: (4_691_908, 4_688_066),
    256: (1_175_524, 1_173_602),
    128: (584_420, 583_010),
    64: (399_460, 398_306),
}
"""(total, trainable) parameters without the front-end [ref (c)], for tests."""

SPARSE_L3_SPARSITIES = (53.5, 63.5, 72.3, 73.5, 81.0, 87.0, 90.5, 95.45)
"""Sparsity levels (%) of the released sparse L3 models [ref (h), incl. bug 4's three]."""


# --------------------------------------------------------------------------- teachers / students
@dataclass(frozen=True, kw_only=True)
class TeacherSpec:
    """What a teacher declares to the rest of the system."""

    name: str
    sample_rate: int
    window_samples: int
    emb_dim: int
    block_frames: int | None = None
    """aisfx only: network input block length in frames (derived from ``window_samples``);
    part of the teacher id, so frames made with different blocks are never mixed."""
    corpus_hop_seconds: float = 0.5
    """Default hop of the upstream corpus pipeline (``sea pipeline embed --hop-seconds``).
    The API's hop is ``API.default_hop_seconds``; the downstream evaluation's is
    ``DOWNSTREAM.eval_hop_seconds``."""

    @property
    def window_seconds(self) -> float:
        """Derived from ``window_samples`` (the stored length)."""
        return self.window_samples / self.sample_rate

    def window_samples_at(self, sample_rate: int) -> int:
        """The same window length in samples at another rate (the 8-kHz student windows)."""
        return int(round(self.window_samples / self.sample_rate * sample_rate))


L3_TEACHER = TeacherSpec(name="l3", sample_rate=48_000, window_samples=48_000, emb_dim=512,
                         corpus_hop_seconds=0.5)
"""L3-Net audio: 1-s windows; upstream SONYC used hop 0.5 s centred (20 per clip) [ref (a)]."""

AISFX_WINDOWS: dict[str, int] = {"1s": 44_100, "2.30s": AISFX_FRONTEND.window_samples}
"""The aisfx analysis windows, in samples at 44.1 kHz (seconds are derived): ``'1s'`` = the
paper's student window (45 frames; used for distillation by ``sea run`` / ``sea pipeline embed``),
``'2.30s'`` = aisfx's native 100-frame block (101,376 samples; ``get_teacher('aisfx')`` default).
aisfx ends with a mean over mel and a max over time, so its trunk runs on any block >= 8 frames."""
DISTILL_TEACHER_WINDOW = "1s"
"""Teacher window of the distillation pipelines (``--teacher-window``)."""
AISFX_NATIVE_WINDOW = "2.30s"


def teacher_window_name(value) -> str:
    """``'1s'`` / ``'2.30s'`` from a name or a number of seconds (``1``, ``'2.3'``, ``'2.30s'``).

    Raises ParameterError for anything else.
    """
    from sea_core.errors import ParameterError
    text = str(value).strip().lower()
    if text in AISFX_WINDOWS:
        return text
    try:
        sec = float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        sec = None
    if sec is not None:
        for name, samples in AISFX_WINDOWS.items():
            if abs(samples / AISFX_FRONTEND.sample_rate - sec) < 0.01:
                return name
    raise ParameterError(f"teacher window must be one of {sorted(AISFX_WINDOWS)} (or its seconds), "
                         f"got {value!r}")


def aisfx_teacher_spec(window: str = AISFX_NATIVE_WINDOW) -> TeacherSpec:
    """The aisfx spec for a named window: block = all frames of ``window_samples``."""
    samples = AISFX_WINDOWS[teacher_window_name(window)]
    return TeacherSpec(name="aisfx", sample_rate=AISFX_FRONTEND.sample_rate, window_samples=samples,
                       emb_dim=512, block_frames=AISFX_FRONTEND.n_frames(samples),
                       corpus_hop_seconds=AISFX_FRONTEND.hop_samples / AISFX_FRONTEND.sample_rate)


AISFX_TEACHER = aisfx_teacher_spec(AISFX_NATIVE_WINDOW)
"""aisfx: 2.30-s blocks of 100 frames, corpus hop = its native 50-frame block hop (1.16 s)."""
AISFX_TEACHER_1S = aisfx_teacher_spec("1s")
"""aisfx on 1-s windows (44,100 samples -> 45 frames): the distillation default."""

# --------------------------------------------------------------------------- the teacher registry
TEACHERS: dict[str, TeacherSpec] = {"aisfx": AISFX_TEACHER, "l3": L3_TEACHER,
                                    "l3-random": L3_TEACHER}
"""THE registry of named teachers -> their spec at the default window (sample rate, window in
samples with seconds derived, corpus hop, embedding dim). The CLI choices, the API's model
types, the pipelines and ``get_teacher`` all read it; anything else is a model path."""
TEACHER_NAMES: tuple[str, ...] = tuple(TEACHERS)
"""``('aisfx', 'l3', 'l3-random')``: the names ``--teacher`` / ``model_type`` accept."""
DEFAULT_TEACHER = "aisfx"
"""Teacher of ``sea run`` / ``sea pipeline embed`` when none is given."""
TEACHER_BATCH_SIZE = 32
"""Windows per teacher forward pass (``Teacher.embed``, ``sea pipeline embed --batch-size``)."""
TEACHER_OPTIONS: dict[str, frozenset[str]] = {
    "aisfx": frozenset({"weights", "batch_size", "window", "precision"}),
    "l3": frozenset({"weights", "content_type", "batch_size", "precision"}),
    "l3-random": frozenset({"seed", "batch_size", "precision"}),
}
"""The keyword options ``get_teacher(name, **options)`` accepts for each named teacher."""
TEACHER_WINDOW_TOLERANCE_SECONDS = 1e-3
"""A named window fits a teacher whose window is this close in duration."""


def teacher_spec(name: str, window: str | None = None) -> TeacherSpec:
    """The spec of a named teacher at ``window`` (aisfx only; L3 takes 1-s windows only)."""
    if name == "aisfx":
        return aisfx_teacher_spec(window or AISFX_NATIVE_WINDOW)
    spec = TEACHERS[name]
    if window is not None:
        check_teacher_window(spec, window, name)
    return spec


def check_teacher_window(spec: TeacherSpec, window, name: str | None = None) -> None:
    """ParameterError unless the named ``window`` (``AISFX_WINDOWS``) has ``spec``'s duration.

    For teachers other than aisfx, whose window is fixed: ``--teacher-window`` may only
    restate it.
    """
    from sea_core.errors import ParameterError
    named = AISFX_WINDOWS[teacher_window_name(window)] / AISFX_FRONTEND.sample_rate
    if abs(named - spec.window_seconds) > TEACHER_WINDOW_TOLERANCE_SECONDS:
        raise ParameterError(f"teacher {name or spec.name!r} takes {spec.window_seconds:g}-s "
                             f"windows only, not {window!r}")


@dataclass(frozen=True, kw_only=True)
class AisfxWeightsSource:
    """Where the aisfx teacher weights come from (fetched with ``pip download``, AISFX.md)."""

    package: str = "aisfx"
    version: str = "0.1.2"
    member: str = "aisfx/models/checkpoint.pth"
    """Checkpoint path inside the wheel."""
    sha256: str = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"
    """sha256 of ``member``."""
    arrays_sha256: str = "588362085df48f1b5d26061f9fcce94ef7d2bbc1dbae26aba15cb51fcc11d07b"
    """sha256 of the converted weight arrays (``sea_core.models.aisfx.arrays_sha256``)."""
    npz_name: str = "aisfx_teacher_512.npz"
    attribution: str = ("Ma & Lerch, ISMIR 2022; model weights CC BY 4.0 (c) 2022 "
                        "A.B. Ma and A. Lerch")
    download_timeout_s: float = 300.0

    @property
    def teacher_id(self) -> str:
        return f"{self.package}-{self.version}"


AISFX_WEIGHTS = AisfxWeightsSource()


@dataclass(frozen=True, kw_only=True)
class OpenL3WeightsSource:
    """The openl3 audio weight files (Keras 2 ``save_weights`` layout, kapre 0.1.4 front-end)."""

    package: str = "openl3"
    file_template: str = "openl3_audio_mel256_{content_type}.h5"
    content_types: tuple[str, ...] = ("music", "env")
    default_content_type: str = "music"


OPENL3_WEIGHTS = OpenL3WeightsSource()


@dataclass(frozen=True, kw_only=True)
class StudentSpec:
    """A SEA student: filters, front-end and input window (taken from its teacher)."""

    emb_dim: int
    window_seconds: float = 1.0
    head: str = "relu"
    """'relu' = paper-faithful (BN+ReLU, max-pool: outputs >= 0);
    'linear' = adds a linear Dense projection so negative PCA targets are reachable [ref (j) 4]."""
    frontend: KapreMelParams = STUDENT_MEL64

    @property
    def filters(self) -> tuple[int, int, int, int]:
        return STUDENT_FILTERS[self.emb_dim]

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.frontend.sample_rate))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(mel, frames, 1) log-mel input of the trunk."""
        return (self.frontend.n_mels, self.frontend.n_frames(self.window_samples), 1)


def student_spec(emb_dim: int, teacher: TeacherSpec = L3_TEACHER, head: str = "relu") -> StudentSpec:
    """The student for ``emb_dim`` whose window length matches ``teacher``'s."""
    if emb_dim not in STUDENT_FILTERS:
        from sea_core.errors import ParameterError
        raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_FILTERS)}, got {emb_dim!r}")
    if head not in ("relu", "linear"):
        from sea_core.errors import ParameterError
        raise ParameterError(f"head must be 'relu' or 'linear', got {head!r}")
    return StudentSpec(emb_dim=emb_dim, window_seconds=teacher.window_seconds, head=head)


# --------------------------------------------------------------------------- SPL and relevance
@dataclass(frozen=True, kw_only=True)
class SplParams:
    """A-weighted Leq per window (IEC 61672 A-curve)."""

    calibration_db: float = 120.0
    """dB SPL of a 0 dBFS signal. dBFS follows AES17: a full-scale sine is 0 dBFS,
    so a sine of peak amplitude a reads 20*log10(a) dBFS. 120 is typical of a
    MEMS microphone of -26 dBFS sensitivity at 94 dB SPL; set it per sensor."""
    floor_db: float = -200.0
    """Level reported for digital silence (dBFS), instead of -inf."""
    sidecar_hz: float = 1.0
    """Rate of sidecar SPL rows (SONYC sensors report one value per second)."""


SPL = SplParams()


@dataclass(frozen=True, kw_only=True)
class RelevanceParams:
    """Relative-loudness relevance [ref (e)]: min-rank / count in 2-hour bins."""

    bin_hours: int = 2
    timezone: str = "America/New_York"
    per_sensor: bool = True
    """Rank within each sensor's bins (the authors processed one sensor at a time)."""


RELEVANCE = RelevanceParams()


# --------------------------------------------------------------------------- sampling
@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """Informed sampling of the PCA fitting set [ref (e)]."""

    dpp_diag: float = 0.1
    """L = diag(q) S diag(q) + dpp_diag * I."""
    dpp_seed: int = 20180123
    s_init_seed: int = 413121
    reference_nb_iter: int = 3
    default_fraction: float = 0.1
    default_mode: str = "scalable"
    """DPP mode of ``sea pipeline select`` (``sea_core.sampling.MODES``)."""
    period: str = "day"
    small_group_policy: str = "whole"
    """Groups smaller than their k: 'whole' = take the whole group and report it;
    'skip' = select nothing from it (the reference's silent skip, reported here)."""
    reference_max_group: int = 8000
    """Largest group the 'reference' mode accepts: it builds the dense N x N kernel
    (8000 -> 512 MB float64 per copy). Larger groups raise ParameterError."""
    dual_eig_rtol: float = 1e-9
    """Dual eigenvalues below rtol * max are treated as 0 (their directions join the
    c-only eigenspace of L = B B^T + c I)."""
    max_group_windows: int = 20_000
    """A (sensor, period) group with more windows is split into consecutive time
    blocks (whole hours where possible) of at most this many windows, each sampled
    with its share of the group's budget, and a warning is logged. It bounds a
    select worker's memory: the group's float32 embeddings and DPP features
    (2 x n x D x 4 B) plus greedy MAP's float64 k x n Cholesky rows per block
    (20,000 windows at a 10 % budget: 82 MB + 320 MB; a month group of 78 k windows
    would otherwise need 4.9 GB)."""


SAMPLING = SamplingParams()


# --------------------------------------------------------------------------- reduction (PCA targets)
@dataclass(frozen=True, kw_only=True)
class ReductionParams:
    """StandardScaler + PCA fitted on the sampled teacher embeddings [ref (d)]."""

    version: str = "1"
    """Artifact format version; loading another version raises SchemaError."""
    dims: tuple[int, ...] = (512, 256, 128, 64)
    memory_limit_bytes: int = 2 * 1024 ** 3
    """Above N * D * 8 bytes the fit switches to IncrementalPCA over row batches."""
    batch_rows: int = 16_384
    """Default IncrementalPCA batch (raised to max(dims) when smaller)."""
    npz_name: str = "reduction.npz"
    json_name: str = "reduction.json"


REDUCTION = ReductionParams()


# --------------------------------------------------------------------------- training
@dataclass(frozen=True, kw_only=True)
class TrainParams:
    """Student training [ref (f)]."""

    learning_rate: float = 1e-4
    batch_size: int = 64
    steps_per_epoch: int = 4096
    validation_steps: int = 1024
    epochs: int = 300
    early_stop_min_delta: float = 1e-4
    early_stop_patience: int = 10
    reduce_lr_factor: float = 0.1
    reduce_lr_patience: int = 5
    seed: int = 20180216
    shuffle_buffer: int = 4096
    interleave_shards: int = 16
    """Training shards read at once (round-robin) before the row shuffle buffer: one
    epoch mixes windows of 16 sensor-days rather than 4 (each open reader ~30 MB)."""


TRAIN = TrainParams()
"""``steps_per_epoch`` is THE epoch definition, for ``sea train`` and ``sea plan``
alike (``sea_core.train.epoch_steps``): an epoch is ``min(steps_per_epoch, one pass)``
steps of ``batch_size`` windows - a full pass only for small training sets
(at 113 M training windows a pass would be 1.8 M steps, 8-12 days on 2 cores)."""


# --------------------------------------------------------------------------- deployment
@dataclass(frozen=True, kw_only=True)
class BoardBudget:
    """Flash and RAM a target microcontroller offers the model."""

    name: str
    flash_bytes: int
    ram_bytes: int


BOARDS = {
    "cortex-m7-2mb-1mb": BoardBudget(name="cortex-m7-2mb-1mb", flash_bytes=2 * 1024 * 1024,
                                     ram_bytes=1024 * 1024),
    "cortex-m7-2mb-512kb": BoardBudget(name="cortex-m7-2mb-512kb", flash_bytes=2 * 1024 * 1024,
                                       ram_bytes=512 * 1024),
    "cortex-m4-1mb-256kb": BoardBudget(name="cortex-m4-1mb-256kb", flash_bytes=1024 * 1024,
                                       ram_bytes=256 * 1024),
    "cortex-m4-512kb-64kb": BoardBudget(name="cortex-m4-512kb-64kb", flash_bytes=512 * 1024,
                                        ram_bytes=64 * 1024),
}
DEFAULT_BOARD = "cortex-m7-2mb-1mb"


@dataclass(frozen=True, kw_only=True)
class QuantParams:
    representative_windows: int = 500
    min_mean_cosine: float = 0.98
    max_arena_bytes: int = 4 * 1024 * 1024
    """Upper bound of the arena bisection."""
    model_alignment: int = 16
    fidelity_windows: int = 200
    """Held-out windows for the int8-vs-float cosine distribution."""
    tflm_check_windows: int = 4
    """Windows run through TFLM and compared bit-exactly with the TFLite reference kernels."""
    seed: int = 20210601
    """Seed of the representative / held-out window draw."""
    flash_goal_bytes: int = 500_000
    """``--optimize memory``: int4 weights for the largest convs until the model fits this."""
    arena_goal_bytes: int = 96 * 1024
    """``--optimize memory``: patch-based inference until the one TFLM arena (both stages run in
    sequence in the same buffer) fits this."""
    ram_goal_bytes: int = 102_500
    """``--optimize memory``: total RAM goal (arena + log-mel + stitched map; the front-end scratch
    reuses the arena buffer): the paper's 0.1025 MB."""
    paper_flash_bytes: int = 585_000
    """The paper's 8-bit Student 2 (128-d) on a Cortex-M7: 0.585 MB flash ..."""
    paper_ram_bytes: int = 102_500
    """... and 0.1025 MB RAM (poster, section 6)."""
    paper_model: str = "paper: 8-bit Student 2 (128-d)"
    """How ``report.html`` labels the paper's figures (the board budget, goals and paper figures
    the report measures the int8 student against are this dataclass's fields)."""
    mcu_hz: int = 480_000_000
    """Clock of the target Cortex-M7 for the latency estimate."""
    macs_per_cycle: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Sustained int8 MACs per cycle bracketing CMSIS-NN convolutions on a Cortex-M7."""
    latency_goal_seconds: float = 0.5
    """Goal: one 1-s window in <= 0.5 s at 1 MAC/cycle (continuous embedding at hop 0.5 s)."""
    latency_goal_macs_per_cycle: float = 1.0
    int4_min_mean_cosine: float = 0.98
    """int4 layers are dropped again (largest last) if the mean cosine falls below this."""
    int4_groups: tuple[int, ...] = (2, 4, 8)
    """``--optimize memory``: output-channel group counts tried for int4 convs (TFLM unpacks an
    int4 filter into arena scratch; G groups cut it to 1/G). TFLM's CONCATENATION takes <= 10 inputs."""


QUANT = QuantParams()


# --------------------------------------------------------------------------- downstream
@dataclass(frozen=True, kw_only=True)
class DownstreamParams:
    """SONYC-UST multi-label classifier [ref (g)]."""

    hidden_units: tuple[int, ...] = (128, 128)
    l2: float = 1e-5
    learning_rate: float = 1e-5
    batch_size: int = 64
    epochs: int = 1500
    patience: int = 1500
    threshold: float = 0.5
    verified_annotator_id: int = 0
    eval_hop_seconds: float = 0.1
    eval_center: bool = False
    """Research SONYC-UST extraction: hop 0.1 s, uncentred (91 windows per 10-s clip)."""


DOWNSTREAM = DownstreamParams()
"""The authors' settings (1500 epochs at lr 1e-5): kept for reproduction."""

DOWNSTREAM_QUICK = DownstreamParams(learning_rate=1e-3, epochs=200, patience=25,
                                    eval_hop_seconds=0.5)
"""What `sea evaluate` / `sea run` use by default on a CPU: same model, faster schedule,
hop 0.5 s (the upstream hop) so a 10-s clip gives ~20 windows instead of 91."""

SONYC_COARSE_CLASSES = (
    "engine", "machinery-impact", "non-machinery-impact", "powered-saw",
    "alert-signal", "music", "human-voice", "dog",
)


# --------------------------------------------------------------------------- synthetic corpus
@dataclass(frozen=True, kw_only=True)
class SynthParams:
    """The deterministic SONYC-like demo corpus (`sea synth`, ``sea_core/synth/``)."""

    sample_rate: int = 48_000
    clip_seconds: float = 10.0
    sensors: int = 4
    """Upstream (unlabelled) sensors."""
    days: int = 2
    """Consecutive local days from ``start_date``."""
    clips_per_day: int = 6
    """Upstream clips per sensor and day, one at a random time in each equal slice of the day."""
    labelled_clips: int = 120
    """Clips of the downstream (SONYC-UST layout) labelled set."""
    labelled_sensors: int = 10
    """Sensors of the labelled set; splits are made by sensor when there are enough."""
    seed: int = 0
    start_date: str = "2019-03-04"
    """First local day (YYYY-MM-DD) in ``timezone``."""
    timezone: str = RELEVANCE.timezone
    calibration_db: float = SPL.calibration_db
    """dB SPL of 0 dBFS used to scale the synthetic levels and the SPL sidecars."""
    classes: tuple[str, ...] = SONYC_COARSE_CLASSES
    upstream_held_out: tuple[str, ...] = ()
    """Classes that never occur in the upstream (unlabelled) corpus but do in the labelled set:
    out-of-domain classes for ``sea experiment specialisation`` (issue 18)."""
    class_prevalence: tuple[float, ...] = (0.55, 0.12, 0.12, 0.10, 0.22, 0.10, 0.35, 0.07)
    """Daytime probability that a clip holds each class (same order as ``classes``);
    modulated by hour of day (works by day, music/voices in the evening)."""
    background_dba: tuple[float, float] = (50.0, 65.0)
    """Range of the background A-weighted Leq (quiet night .. rush hour)."""
    max_event_dba: float = 90.0
    """Loudest event Leq; events are at least ``min_event_snr_db`` above the background."""
    min_event_snr_db: float = 6.0
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    """train / validate / test."""
    unverified_train_fraction: float = 0.2
    """Train clips with crowd rows only (no annotator 0 row); validate/test are all verified."""
    crowd_fraction: float = 0.5
    """Verified clips that also get crowd annotator rows."""
    crowd_annotators: tuple[int, int] = (1, 3)
    """Min / max crowd rows per annotated clip."""
    crowd_miss_rate: float = 0.15
    """Probability a crowd annotator misses a present class."""
    crowd_false_alarm_rate: float = 0.03
    """Probability a crowd annotator tags an absent class."""


SYNTH = SynthParams()


# --------------------------------------------------------------------------- API
@dataclass(frozen=True, kw_only=True)
class ApiParams:
    default_model_type: str = "sea"
    default_emb_dim: int = 128
    default_hop_seconds: float = 0.1
    default_batch_size: int = 64
    sea_home_env: str = "SEA_HOME"
    sea_home_default: str = "~/.cache/sea"
    valid_model_types: tuple[str, ...] = field(default=("sea", "sparse", *TEACHER_NAMES))
    max_frames_bytes: int = 4 << 30
    """get_embedding refuses a hop that would cut more than this many bytes of float32
    windows (``hop_size=1e-7`` would otherwise ask for TiB)."""


API = ApiParams()


# --------------------------------------------------------------------------- audio I/O and SPL details
INT16_SCALE = 32768.0
"""int16 PCM <-> float audio as soundfile decodes it: ``float = int16 / INT16_SCALE``;
``int16 = clip(round(float * INT16_SCALE), -32768, 32767)`` (the stored 8-kHz student audio)."""


@dataclass(frozen=True, kw_only=True)
class AudioIOParams:
    """Reading, downmixing and resampling audio (``sea_core/audio/io.py``)."""

    resample_quality: str = "HQ"
    """soxr quality recipe."""
    max_channels: int = 64
    """More channels than this is taken for a wrong layout (ChannelLayoutError)."""
    fsspec_extras: tuple[tuple[str, str], ...] = (
        ("gs", "gcp"), ("gcs", "gcp"), ("s3", "s3"), ("s3a", "s3"))
    """URL protocol -> ``pip install sea[<extra>]`` that provides its fsspec backend."""


AUDIO_IO = AudioIOParams()


@dataclass(frozen=True, kw_only=True)
class AudioLimitsParams:
    """Bounds on what one recording may decode to (checked from the header, before decoding)."""

    min_sample_rate: int = 8000
    """A file declaring a lower rate (e.g. 1 Hz) is a dead letter: resampling it up would
    turn a few bytes into gigabytes."""
    max_seconds: float = 600.0
    """Longest recording accepted by ``sea pipeline embed`` (``--max-seconds``); SONYC clips
    are 10 s, so 10 minutes leaves room while bounding a worker's memory (~1 GB of windows)."""


AUDIO_LIMITS = AudioLimitsParams()


@dataclass(frozen=True, kw_only=True)
class ListingParams:
    """Guards of the list stage of ``sea pipeline embed``."""

    max_removed_fraction: float = 0.10
    """An --incremental run that would remove more than this fraction of the manifest (or all
    of it) is refused unless ``--allow-removals`` (a mistyped glob must not wipe the output)."""
    summary_max_uris: int = 1000
    """URIs ``run_summary.json`` lists by name (removed, missing, in both outputs; the
    first ones in URI order): its counts are exact, the lists are capped so the launcher's
    memory does not grow with the corpus."""


LISTING = ListingParams()


@dataclass(frozen=True, kw_only=True)
class EmbedParams:
    """Defaults of ``sea pipeline embed`` (``pipelines.embed_config.EmbedConfig`` and its flags; the
    teacher and its batch size are the teacher registry's defaults)."""

    teacher_precision: str = "auto"
    """'auto' | 'fp32' | 'bf16' (auto: bf16 on a CPU with AMX-BF16 / AVX512-BF16)."""
    shard_size: int = 16
    """Recordings per work unit (decoded, scored and embedded together)."""


EMBED = EmbedParams()


@dataclass(frozen=True, kw_only=True)
class AWeightingParams:
    """IEC 61672-1 A-weighting: pole frequencies (Hz) and the +2.00 dB 1-kHz normalisation."""

    f1: float = 20.598997
    f2: float = 107.65265
    f3: float = 737.86223
    f4: float = 12194.217
    a1000_db: float = 1.9997


A_WEIGHTING = AWeightingParams()


@dataclass(frozen=True, kw_only=True)
class SidecarParams:
    """Per-second SPL sidecars (CSV with header, or Parquet)."""

    offset_column: str = "offset_s"
    """Seconds from the start of the recording."""
    dba_column: str = "dba"
    """A-weighted level of that second, dB SPL."""
    min_dba: float = 0.0
    max_dba: float = 194.0
    """Plausible range of a sidecar level (194 dB SPL is the loudest undistorted sound in
    air); a value outside it makes the recording a dead letter."""
    csv_suffixes: tuple[str, ...] = (".csv",)
    parquet_suffixes: tuple[str, ...] = (".parquet", ".pq")


SIDECAR = SidecarParams()



# --------------------------------------------------------------------------- capacity model (`sea plan`)
@dataclass(frozen=True, kw_only=True)
class CapacityParams:
    """Defaults and stated assumptions of the capacity model (``sea_core/plan.py``, docs/scaling.md).

    Everything measured comes from ``benchmarks/results/models.json``; the values
    here are used only where no measurement exists, and ``sea plan`` says so.
    """

    sensors: int = 50
    years: float = 3.0
    clip_interval_s: float = 300.0
    """One clip per sensor every this many seconds."""
    clip_seconds: float = 10.0
    input_sample_rate: int = 48_000
    """Sample rate of the recorded FLAC clips (the demo corpus rate)."""
    input_bits: int = 16
    flac_ratio: float = 0.6
    """FLAC size / 16-bit PCM size (assumed; street noise compresses less than music)."""
    metadata_bytes_per_window: int = 256
    """Uncompressed upper bound of the frames row's non-array columns (ids, uri, times, SPL)."""
    training_row_overhead_bytes: int = 96
    """window_id + sensor + day of a training-set row."""
    parquet_ratio: float = 1.0
    """Parquet size / raw column bytes (1.0: no credit taken for compression)."""
    default_teacher_fps_per_vcpu: float = 10.0
    """Teacher windows/s per vCPU when benchmarks/results/models.json is absent (assumed)."""
    default_student_fps_per_vcpu: float = 400.0
    """Student (with front-end) windows/s per vCPU when models.json is absent (assumed)."""
    gpu_speedup: float = 60.0
    """Teacher windows/s of one T4 GPU / windows/s of one vCPU (assumed: no GPU was measured)."""
    cost_cpu_hour: float = 0.07
    """USD per vCPU-hour (Dataflow batch vCPU + 3.75 GB memory, list price, assumed)."""
    cost_gpu_hour: float = 0.63
    """USD per T4-hour including its n1-standard-4 host (assumed)."""
    preprocess_cpu_s_per_clip: float = 0.005
    """vCPU-seconds to decode, resample (2x soxr HQ), frame and SPL one 10-s clip (assumed)."""
    train_backward_factor: float = 3.0
    """A training step costs this many forward passes (forward + backward + update)."""
    pca_flops_per_s_per_vcpu: float = 2e10
    """Sustained float64 GEMM rate of one vCPU for the PCA fit (assumed)."""
    refresh_days: int = 7
    benchmark_batch: int = 64
    """Batch size whose measured windows/s the model uses."""


CAPACITY = CapacityParams()



# --------------------------------------------------------------------------- training sets
@dataclass(frozen=True, kw_only=True)
class TrainingSetParams:
    """Parquet training sets (``sea pipeline build-training-set``)."""

    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """train / validate / test, assigned per sensor-day so no recording spans splits."""
    shard_target_bytes: int = 96 * 1024 * 1024
    """Shards of ~64-128 MB: rows per shard = this / bytes per row."""
    row_group_rows: int = 1024
    """Rows per Parquet row group (~16-20 MB for 1-s windows): the streaming unit."""
    split_seed: int = 0


TRAINING_SET = TrainingSetParams()


# --------------------------------------------------------------------------- end-to-end run
@dataclass(frozen=True, kw_only=True)
class RunParams:
    """Defaults of ``sea run`` / ``make demo`` (sized to finish in <= 15 min on 2 cores)."""

    teacher: str = DEFAULT_TEACHER
    teacher_window: str = DISTILL_TEACHER_WINDOW
    """aisfx analysis window (``AISFX_WINDOWS``); students take the same seconds at 8 kHz."""
    teacher_precision: str = "auto"
    """Embed stage's teacher arithmetic: auto (bf16 on AMX-BF16 / AVX512-BF16 CPUs) | fp32 | bf16."""
    emb_dim: int = 128
    head: str = "relu"
    sensors: int = 6
    days: int = 3
    clips_per_day: int = 10
    labelled_clips: int = 120
    corpus_hop_seconds: float | None = 0.5
    """Hop of the upstream embed stage (None = the teacher's corpus hop)."""
    method: str = "diversity+relevance"
    mode: str = "scalable"
    fraction: float = 0.1
    min_fit_per_dim: int = 2
    """The PCA sample holds at least this many windows per target dim."""
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    """Higher than the reference's 1e-4: the demo set is small and the CPU budget tight."""
    board: str = DEFAULT_BOARD
    seed: int = 0
    sensors_select: int | None = None
    """Choose this many sensors by k-DPP over ``sensors.csv`` before selecting windows (issue 18)."""


RUN = RunParams()


@dataclass(frozen=True, kw_only=True)
class ExperimentParams:
    """``sea experiment sampling|students`` (the poster's two tables) on a finished run."""

    methods: tuple[str, ...] = ("random", "relevance", "diversity", "diversity+relevance")
    seeds: tuple[int, ...] = (0, 1, 2)
    mode: str = "scalable"
    student_dims: tuple[int, ...] = STUDENT_EMB_DIMS
    epochs: int = 8
    """Student epochs per cell (each cell trains one student)."""
    steps_per_epoch: int | None = None
    downstream_epochs: int = DOWNSTREAM_QUICK.epochs
    comparison_seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the quick sampling comparison every ``sea run`` does (no student)."""
    comparison_max_windows: int = 100_000
    """The quick comparison works on a uniform random sample of at most this many
    windows (drawn per partition, seeded) with the budget scaled by the same ratio:
    ~200 MB of float32 embeddings at D = 512 whatever the corpus. The held-out R^2 of
    a <= 128-dim PCA estimated on 10^5 windows has a sampling error of ~1e-3, far below
    the differences between sampling methods it is meant to show."""


EXPERIMENT = ExperimentParams()


@dataclass(frozen=True, kw_only=True)
class ReportParams:
    """``report.html`` layout limits."""

    dead_letter_rows: int = 200
    """Dead letters listed in the page's table (all of them stay in report.json)."""
    dead_letter_cell_chars: int = 400
    """Longer messages are cut in the table."""


REPORT = ReportParams()


# --------------------------------------------------------------------------- sensors (issue 18)
@dataclass(frozen=True, kw_only=True)
class SensorParams:
    """Sensor selection by DPP over coordinates and per-sensor calibration (``sea_core/sensors.py``)."""

    csv_name: str = "sensors.csv"
    """Optional file next to the corpus (its root, or the parent of ``upstream/``)."""
    kernel: str = "exponential"
    """``exponential``: ``L_ij = exp(-d_ij / length_km)`` on the haversine distance (positive
    definite on the sphere). ``inverse``: the authors' ``1 / (d_ij + eps_km)`` (also positive
    definite, but nearly ``I / eps`` for small ``eps``: close to uniform sampling)."""
    length_km: float = 1.0
    eps_km: float = 1e-3
    """``eps`` of the ``inverse`` kernel, in km (the authors used 1e-15 in unknown units)."""
    jitter: float = 1e-9
    """Added to the diagonal of the exponential kernel (keeps Cholesky stable for co-located sensors)."""
    method: str = "kdpp"
    """``kdpp`` (exact k-DPP sample, seeded) or ``greedy`` (greedy MAP)."""
    seed: int = 20180123
    earth_radius_km: float = 6371.0088
    baseline_subsets: int = 200
    """Random K-subsets whose log det median is recorded next to the chosen set's."""


SENSORS = SensorParams()
