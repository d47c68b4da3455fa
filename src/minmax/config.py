"""Typed run configuration: dataclass schema <- YAML preset <- dotted CLI overrides.

Every override must hit an existing field (unknown keys fail with "did you mean"), and is
parsed by that field's type, so ``train.lr_d=1e-4`` becomes a float and ``train.lr_d=abc``
is an error before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from minmax.errors import UsageError
from minmax.registry import did_you_mean


@dataclass
class DataConfig:
    # a toy density (ring, grid, ...), a .npy/.npz/.csv file of N×d points, an image dataset
    # (mnist, fashion-mnist, cifar10), a folder of images, or an .npz of uint8 images
    name: str = "ring"
    # where dataset files are found or downloaded to; none = $MINMAX_CACHE or ~/.cache/minmax
    root: str | None = None
    download: bool = True  # fetch missing official files (SHA-256 checked) when online
    split: str = "train"  # train | test (named datasets)
    resolution: int = 0  # image side in pixels; 0 = the dataset's own
    channels: int = 0  # 1 (grayscale) or 3 (RGB); 0 = the dataset's own
    labels: bool = True  # folder datasets: class labels from sub-folder names
    # folders: skip files that cannot be decoded (counted and warned) instead of stopping
    skip_bad: bool = False
    # train on (x - mean) / std per coordinate, mapped back for samples, plots and D(x):
    # auto (points files on, named densities off) | on | off (minmax.data.standardize)
    standardize: str = "auto"


@dataclass
class ModelConfig:
    arch: str = "mlp"  # network family: mlp (points) | dcgan | resnet | biggan | r3gan (images)
    # size of G's input z ~ N(0, I); with codes > 0, z[:, 0] is the code and the rest continuous
    z_dim: int = 2
    # a discrete latent for data in separate pieces (mlp): z[:, 0] picks one of `codes` codes,
    # drawn with shares learned from D (minmax.models.codes); 0 = off
    codes: int = 0
    # scale of the continuous latent z[:, 1:] when codes > 0: below 1 each code starts as a
    # tight blob that settles into one mode as a whole
    code_spread: float = 1.0
    # where the codes start: net (where the untrained G puts them, all near one point) or box
    # (each at a uniform point of the data's bounding box, through a learned output offset)
    code_init: str = "net"
    g_width: int = 128  # mlp: units per hidden layer of G
    g_depth: int = 5  # mlp: hidden layers of G
    g_activation: str = "relu"  # mlp: G's activation, relu | leaky_relu
    d_width: int = 128  # mlp: units per hidden layer of D (each head, if two)
    d_depth: int = 3  # mlp: hidden layers of D (each head, if two)
    d_activation: str = "leaky_relu"  # mlp: D's activation, relu | leaky_relu
    # mlp: a second D head on random Fourier features of x, for detail far below the data's
    # extent: the number of features; 0 = off
    d_fourier: int = 0
    # the Fourier head's frequencies ~ N(0, d_fourier_scale²), in cycles per unit of x
    d_fourier_scale: float = 1.0

    g_channels: int = 64  # dcgan/resnet/biggan/r3gan: base width of G (DCGAN's ngf)
    d_channels: int = 64  # dcgan/resnet/biggan/r3gan: base width of D (DCGAN's ndf)
    g_spectral_norm: bool = False  # dcgan/resnet/biggan: spectral norm on G's layers
    # dcgan/resnet/biggan: spectral norm on D's layers (dcgan's D then drops its batch norm)
    d_spectral_norm: bool = False
    # dcgan: batch norm in D after every conv but the first. Off, each logit depends on its
    # own image only, as R1/R2 and the relativistic pairs assume
    d_batch_norm: bool = True
    # dcgan: 3×3 convs (each after BN + ReLU) G adds at each feature-map side before it
    # upsamples: depth for its two or three layers at little cost; 0 = the paper's G
    g_extra_convs: int = 0
    conditional: bool = False  # class-conditional G and D (needs labelled data)
    attention_res: int = 0  # resolution of the self-attention block (biggan), 0 = none
    blocks_per_stage: int = 2  # r3gan: residual blocks at each feature-map side, G and D
    # r3gan: inverted bottleneck: a block's 1×1 conv widens its c channels to expansion·c
    expansion: int = 2
    group_channels: int = 16  # r3gan: channels per group of the grouped 3×3 conv
    # r3gan: a stage is width·min(2^(halvings to the image side), this) channels: 8 widens
    # toward 4×4, 1 keeps g/d_channels at every side (the paper's CIFAR-10 model)
    max_width_factor: int = 8


@dataclass
class LossConfig:
    # the game G and D play: nonsaturating | saturating | hinge | lsgan | rpgan | wgan-gp
    objective: str = "nonsaturating"
    r1_gamma: float = 0.0  # weight γ of (γ/2)·E_P‖∇D‖², 0 = off
    r2_gamma: float = 0.0  # the same on generated samples
    reg_every: int = 4  # lazy R1/R2: every N-th D step, weighted by N (StyleGAN2's trick)
    gp_weight: float = 10.0  # λ of the WGAN-GP penalty, used only by objectives that need it
    ortho_reg: float = 0.0  # BigGAN's orthogonal regularization of G's weights (1e-4), 0 = off


@dataclass
class AugmentConfig:
    # DiffAugment policy applied to real and fake batches before D: comma-separated from
    # translation, cutout, color; "" = off
    policy: str = ""
    # adaptive discriminator augmentation (Karras et al. 2020): every image D sees goes through
    # augment.ada_ops, each op applied with a probability p that adapts to D's overfitting
    ada: bool = False
    # the r_t = E[sign(D(x_real))] that p steers toward, in (0, 1); under rpgan and wgan-gp,
    # whose logits drift by any constant, r_t = E[sign(D(x_real) - D(x_fake))] over pairs
    ada_target: float = 0.6
    ada_kimg: float = 500.0  # thousands of images for p to go from 0 to 1 at the fastest rate
    ada_interval: int = 4  # D steps between updates of p (r_t is averaged over them)
    # the ops, comma-separated, applied in this order; default: the paper's leak-free (p < 0.8)
    # "bgc" set. Also: cutout. Grey images use only brightness and contrast of the colour ops
    ada_ops: str = (
        "xflip,rot90,xint,scale,rotate,aniso,xfrac,brightness,contrast,lumaflip,hue,saturation"
    )
    ada_fixed_p: float | None = None  # hold p here instead of adapting (ablations); none = adapt


CODE_INITS = ["net", "box"]
STANDARDIZE = ["auto", "on", "off"]
LR_SCHEDULES = ["constant", "cosine", "linear"]
DEVICES = ["auto", "cpu", "cuda"]
PRECISIONS = ["auto", "fp32", "bf16"]
ADAM_IMPLS = ["auto", "fused", "foreach", "loop"]
AutoBool = Literal["auto", True, False]  # a switch that minmax.train.autotune may decide


@dataclass
class TrainConfig:
    kimg: float = 1500.0  # run length: thousands of real samples shown to D
    max_minutes: float | None = None  # optional wall-time cap; stops cleanly with a checkpoint
    # real samples per D step (and latents per G step): the global batch, summed over ranks
    batch_size: int = 256
    n_dis: int = 1  # D steps per G step
    lr_g: float = 1e-3  # G's Adam step size (before lr_schedule and rollbacks scale it)
    lr_d: float = 2e-3  # D's Adam step size (before lr_schedule and rollbacks scale it)
    lr_schedule: str = "cosine"  # constant | cosine | linear: decay to 0 over train.kimg
    beta1: float = 0.5  # Adam's β1 for G and D, in [0, 1)
    beta2: float = 0.999  # Adam's β2 for G and D, in [0, 1)
    ema_beta: float = 0.99  # G_ema decay per G step; 0 = no averaging (G_ema = G)
    ema_warmup_kimg: float = 0.0  # G_ema copies G until then (early G moves too fast to average)
    # G_ema's half-life in kimg, replacing train.ema_beta: β = 0.5^(img per G step / (1000·h));
    # 0 = use train.ema_beta
    ema_half_life_kimg: float = 0.0
    # burn-in (R3GAN; minmax.train.burnin): over the first burnin_kimg thousand images each
    # start value below moves to its end value (the plain key) by a half cosine, then stays
    # there; 0 = off (the start values must then be left at their defaults)
    burnin_kimg: float = 0.0
    lr_start_factor: float = 1.0  # lr_g and lr_d × this at kimg 0, × 1 from burnin_kimg on
    beta2_start: float | None = None  # Adam's β2 at kimg 0, moving to train.beta2; none = fixed
    # G_ema's half-life at kimg 0 as a multiple of train.ema_half_life_kimg (0 = no averaging)
    ema_half_life_start_factor: float = 1.0
    # loss.r1_gamma and loss.r2_gamma × this at kimg 0, × 1 from burnin_kimg on
    gamma_start_factor: float = 1.0
    code_rate: float = 0.01  # step of G's code shares per G step (model.codes > 0), 0 = fixed
    # every this many kimg, G's most starved code moves to the real point D scores highest
    # (minmax.train.revive; codes over the data's box only); 0 = off
    code_revive_kimg: float = 0.0
    # G_ema's batch-norm statistics re-estimated from this many samples before it is saved or
    # shown (its own weights, not G's statistics); 0 = copy G's
    ema_bn_samples: int = 4096
    seed: int = 0  # seeds the weights, data order, latents, augmentation and penalties
    # FreezeD (Mo et al. 2020), for fine-tuning (--init-from): D's first K blocks from the
    # input (models.d_blocks) keep their weights and leave D's optimizer; 0 = off
    freeze_d: int = 0
    threads: int = 0  # torch intra-op threads; 0 = auto (torch's default, cores / local ranks)
    # G steps per log line: mean losses to metrics.jsonl, non-finite and D-wins checks
    log_every_steps: int = 200
    # a checkpoint every N kimg and at the end (weights checked finite first); the
    # mode-collapse check runs after each one
    checkpoint_every_kimg: float = 500.0
    keep_checkpoints: int = 3  # newest checkpoints kept (plus the best-scoring one), >= 1
    grid_every_kimg: float = 0.0  # fixed-noise sample grid PNG every N kimg (images), 0 = end only

    # speed and scale (docs/scaling.md)

    device: str = "auto"  # auto (this rank's GPU if any, else CPU) | cpu | cuda
    # auto | fp32 | bf16 autocast. auto: bf16 only where the hardware has it (CUDA bf16,
    # AVX512-BF16, AMX) and a probe of the run's own networks finds it faster (autotune.py)
    precision: str = "auto"
    compile: bool = False  # torch.compile G, D (not with spectral norm; R1/R2/GP steps eager)
    # NHWC memory format for image models: auto (the probe decides) | true | false
    channels_last: AutoBool = "auto"
    adam: str = "auto"  # auto (fused where supported) | fused | foreach | loop: same maths
    accum_steps: int = 1  # micro-batches per optimizer step (gradient accumulation)
    sync_bn: bool = False  # batch-norm stats over all ranks: same model at any rank count
    dist_timeout_s: float = 1800.0  # a collective waiting longer than this fails the run
    # on non-finite losses or weights (checked at each log line and checkpoint):
    on_nonfinite: str = "stop"  # stop (diagnostic, exit 3) | rollback (to the last checkpoint)
    rollback_lr_factor: float = 0.5  # each rollback multiplies both learning rates by this
    max_rollbacks: int = 3  # rollbacks allowed in one run; the next non-finite value stops it


@dataclass
class EvalConfig:
    n_samples: int = 2500  # samples drawn from G_ema for the final toy metrics
    n_std: float = 3.0  # high-quality radius in component standard deviations
    plots: bool = True  # samples.png and discriminator.png at the end of the run
    # images: metrics scored on G_ema during training (see `minmax evaluate`), "" = none
    metrics: str = ""  # e.g. fid5k,census5k
    every_kimg: float = 0.0  # score every N kimg as well as at the end; 0 = at the end only
    features: str = "digits"  # inception, digits, or a digits-net file
    reference_split: str = "test"  # the data's split the scores compare against


@dataclass
class Config:
    preset: str = "ring"  # the preset the config started from; names the run folder
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- building -------------------------------------------------------------------------------


def preset_names() -> list[str]:
    folder = resources.files("minmax") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    names = preset_names()
    if name not in names:
        raise UsageError(f"unknown preset '{name}': {did_you_mean(name, names)}")
    text = (resources.files("minmax") / "presets" / f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file '{path}' not found: give the path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise UsageError(f"config file '{path}' is not UTF-8 text ({err.reason})") from None
    except yaml.YAMLError as err:
        message = str(err).replace("\n", " ")
        raise UsageError(f"config file '{path}' is not valid YAML: {message}") from None
    if data is not None and not isinstance(data, dict):
        raise UsageError(f"config file '{path}' must hold a mapping of sections to values")
    return data or {}


def _printable(text: str) -> str:
    """``text`` with control characters escaped (a newline shows as \\n)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def from_dict(data: dict[str, Any], cls: type = Config, where: str = "") -> Any:
    """Build a dataclass tree from nested dicts, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = _printable(f"{where}{key}")  # errors stay one line whatever the key holds
        if not isinstance(key, str):
            raise UsageError(f"config key '{path}' is not a name: write keys as text")
        if key not in fields:
            raise UsageError(f"unknown config key '{path}': {did_you_mean(key, list(fields))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise UsageError(f"config key '{path}' is a section: give a mapping")
            kwargs[key] = from_dict(value, hint, f"{path}.")
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def apply_override(cfg: Config, text: str) -> None:
    """Apply one ``section.key=value`` override in place."""
    if "=" not in text:
        raise UsageError(f"malformed override '{text}': write it as section.key=value")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if not all(parts) or len(parts) < 1:
        raise UsageError(f"malformed override '{text}': write it as section.key=value")
    node: Any = cfg
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            where = ".".join(parts[:i]) or "the config"
            raise UsageError(f"unknown config key '{path}' in {where}: {did_you_mean(part, names)}")
        hint = typing.get_type_hints(type(node))[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(hint):
                raise UsageError(f"'{path}' is a section: override one of its keys")
            setattr(node, part, _coerce(raw.strip(), hint, path, from_text=True))
        else:
            if not dataclasses.is_dataclass(hint):
                raise UsageError(f"'{'.'.join(parts[: i + 1])}' is a value, not a section")
            node = getattr(node, part)


def _coerce(value: Any, hint: Any, path: str, from_text: bool = False) -> Any:
    """Convert ``value`` to the field type ``hint`` (int, float, bool, str or X | None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return _choice(value, args, path)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None or (from_text and str(value).lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    bad = UsageError(f"'{path}' must be {hint.__name__}, got '{value}'")
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise bad
    if hint in (int, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if math.isnan(number) or (hint is int and not number.is_integer()):
            raise bad
        if hint is int and isinstance(value, int | str):
            try:  # exact, beyond float's 2**53 ("1e3" is not int syntax: via float above)
                return int(value)
            except ValueError:
                pass
        return hint(number)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise bad
        return str(value)
    raise TypeError(f"unsupported config type {hint} for '{path}'")


BOOL_WORDS = {"true": True, "yes": True, "1": True, "on": True,
              "false": False, "no": False, "0": False, "off": False}  # fmt: skip


def _choice(value: Any, choices: tuple, path: str) -> Any:
    """One of ``choices`` (names and booleans, e.g. ``auto``, ``true``, ``false``)."""
    if isinstance(value, str):
        text = value.strip().lower()
        value = BOOL_WORDS.get(text, text) if True in choices else text
    for choice in choices:  # by type too: 1 == True, but 1 is not a choice
        if type(value) is type(choice) and value == choice:
            return choice
    names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)
    raise UsageError(f"'{path}' must be one of {names}, got '{value}'")


def validate(cfg: Config) -> Config:
    """Range checks that types alone cannot express; each error says the fix."""
    t, m, lo, e = cfg.train, cfg.model, cfg.loss, cfg.eval
    positive = {
        "train.kimg": t.kimg,
        "train.batch_size": t.batch_size,
        "train.n_dis": t.n_dis,
        "train.lr_g": t.lr_g,
        "train.lr_d": t.lr_d,
        "train.log_every_steps": t.log_every_steps,
        "loss.reg_every": lo.reg_every,
        "train.checkpoint_every_kimg": t.checkpoint_every_kimg,
        "train.keep_checkpoints": t.keep_checkpoints,
        "model.z_dim": m.z_dim,
        "model.g_width": m.g_width,
        "model.d_width": m.d_width,
        "model.code_spread": m.code_spread,
        "model.d_fourier_scale": m.d_fourier_scale,
        "eval.n_samples": e.n_samples,
        "eval.n_std": e.n_std,
    }
    for key, value in positive.items():
        if not value > 0 or math.isinf(value):
            raise UsageError(f"'{key}' must be a positive number, got {value}")
    non_negative = {
        "model.g_depth": m.g_depth,
        "model.d_depth": m.d_depth,
        "model.d_fourier": m.d_fourier,
        "loss.r1_gamma": lo.r1_gamma,
        "loss.r2_gamma": lo.r2_gamma,
        "loss.gp_weight": lo.gp_weight,
        "train.threads": t.threads,
        "train.ema_bn_samples": t.ema_bn_samples,
        "train.code_rate": t.code_rate,
        "train.code_revive_kimg": t.code_revive_kimg,
        "train.freeze_d": t.freeze_d,
        "train.ema_half_life_kimg": t.ema_half_life_kimg,
        "train.burnin_kimg": t.burnin_kimg,
        "train.lr_start_factor": t.lr_start_factor,
        "train.ema_half_life_start_factor": t.ema_half_life_start_factor,
        "train.gamma_start_factor": t.gamma_start_factor,
        "eval.every_kimg": e.every_kimg,
        "model.g_extra_convs": m.g_extra_convs,
    }
    for key, value in non_negative.items():
        if not value >= 0 or math.isinf(value):
            raise UsageError(f"'{key}' must be zero or positive, got {value}")
    for key, value in {
        "train.beta1": t.beta1,
        "train.beta2": t.beta2,
        "train.ema_beta": t.ema_beta,
        "train.beta2_start": t.beta2 if t.beta2_start is None else t.beta2_start,
    }.items():
        if not 0 <= value < 1:
            raise UsageError(f"'{key}' must be in [0, 1), got {value}")
    if m.codes < 0 or m.codes == 1:
        raise UsageError(f"'model.codes' must be 0 (off) or at least 2, got {m.codes}")
    if m.code_spread != 1 and not m.codes:
        raise UsageError("'model.code_spread' scales a coded G's latent: set model.codes too")
    if m.code_init not in CODE_INITS:
        raise UsageError(
            f"unknown model.code_init '{m.code_init}': {did_you_mean(m.code_init, CODE_INITS)}"
        )
    if m.code_init != "net" and not m.codes:
        raise UsageError("'model.code_init' places a coded G's codes: set model.codes too")
    if t.code_revive_kimg and m.code_init != "box":
        raise UsageError(
            "'train.code_revive_kimg' moves codes by their output offsets: set model.code_init=box"
        )
    if m.d_fourier_scale != 1 and not m.d_fourier:
        raise UsageError(
            "'model.d_fourier_scale' sets the Fourier head's frequencies: set model.d_fourier too"
        )
    if t.on_nonfinite not in ("stop", "rollback"):
        hint = did_you_mean(t.on_nonfinite, ["stop", "rollback"])
        raise UsageError(f"unknown train.on_nonfinite '{t.on_nonfinite}': {hint}")
    if not 0 < t.rollback_lr_factor <= 1:
        got = t.rollback_lr_factor
        raise UsageError(f"'train.rollback_lr_factor' must be in (0, 1], got {got}")
    if t.max_rollbacks < 0:
        raise UsageError(f"'train.max_rollbacks' must be zero or more, got {t.max_rollbacks}")
    if t.accum_steps < 1:
        raise UsageError(f"'train.accum_steps' must be 1 or more, got {t.accum_steps}")
    if not t.dist_timeout_s > 0:
        raise UsageError(f"'train.dist_timeout_s' must be positive, got {t.dist_timeout_s}")
    for key, value, allowed in [
        ("train.device", t.device, DEVICES),
        ("train.precision", t.precision, PRECISIONS),
        ("train.adam", t.adam, ADAM_IMPLS),
    ]:
        if value not in allowed:
            raise UsageError(f"unknown {key} '{value}': {did_you_mean(value, allowed)}")
    if cfg.data.standardize not in STANDARDIZE:
        hint = did_you_mean(cfg.data.standardize, STANDARDIZE)
        raise UsageError(f"unknown data.standardize '{cfg.data.standardize}': {hint}")
    if t.lr_schedule not in LR_SCHEDULES:
        hint = did_you_mean(t.lr_schedule, LR_SCHEDULES)
        raise UsageError(f"unknown train.lr_schedule '{t.lr_schedule}': {hint}")
    _check_burnin(t)
    for key in ("blocks_per_stage", "expansion", "group_channels", "max_width_factor"):
        if getattr(m, key) < 1:
            raise UsageError(f"'model.{key}' must be 1 or more, got {getattr(m, key)}")
    if m.g_extra_convs and m.arch != "dcgan":
        raise UsageError(f"model.g_extra_convs is for arch=dcgan, not {m.arch}: set it to 0")
    if t.max_minutes is not None and not t.max_minutes > 0:
        raise UsageError(f"'train.max_minutes' must be positive or none, got {t.max_minutes}")
    validate_ada(cfg.augment)
    return cfg


def validate_ada(a: AugmentConfig) -> None:
    """ADA's ranges; its op names are checked by minmax.augment.ada.parse_ops."""
    if a.ada and a.policy:
        raise UsageError("augment.policy (DiffAugment) and augment.ada=true both augment D's "
                         "inputs: use one of them")  # fmt: skip
    if not 0 < a.ada_target < 1:
        raise UsageError(f"'augment.ada_target' must be in (0, 1), got {a.ada_target}")
    if not a.ada_kimg > 0 or math.isinf(a.ada_kimg):
        raise UsageError(f"'augment.ada_kimg' must be a positive number, got {a.ada_kimg}")
    if a.ada_interval < 1:
        raise UsageError(f"'augment.ada_interval' must be 1 or more, got {a.ada_interval}")
    if a.ada_fixed_p is not None and not 0 <= a.ada_fixed_p <= 1:
        raise UsageError(f"'augment.ada_fixed_p' must be in [0, 1] or none, got {a.ada_fixed_p}")


def _check_burnin(t: TrainConfig) -> None:
    """A start value needs a burn-in to move from; a half-life start needs a half-life."""
    starts = {
        "train.lr_start_factor": t.lr_start_factor != 1,
        "train.beta2_start": t.beta2_start is not None,
        "train.ema_half_life_start_factor": t.ema_half_life_start_factor != 1,
        "train.gamma_start_factor": t.gamma_start_factor != 1,
    }
    for key, moved in starts.items():
        if moved and not t.burnin_kimg > 0:
            raise UsageError(f"'{key}' is a burn-in start value: set train.burnin_kimg > 0 too")
    if t.ema_half_life_start_factor != 1 and not t.ema_half_life_kimg > 0:
        raise UsageError(
            "'train.ema_half_life_start_factor' scales train.ema_half_life_kimg: set it > 0 too"
        )


def resolve(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] = (),  # type: ignore[assignment]
) -> Config:
    """Defaults <- preset (or YAML file) <- overrides, then validated."""
    if preset and config_file:
        raise UsageError("give either --preset or --config, not both")
    if config_file:
        data = load_yaml(config_file)
    else:
        data = load_preset(preset or "ring")
        data.setdefault("preset", preset or "ring")
    cfg = from_dict(data)
    for text in overrides:
        apply_override(cfg, text)
    return validate(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
