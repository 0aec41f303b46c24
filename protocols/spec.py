"""``ProtocolSpec``: every knob that changes a reported number, frozen; and the named presets.

Each preset reproduces one paper's or official repository's evaluation convention as documented in
``shared/docs/protocols.md`` §4 (the table is transcribed here as data). A preset never branches on a
paper name: the pipeline reads only these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from protocols.errors import UserError
from protocols.metrics import AGGREGATION, METRICS, SSIM_DEFINITION  # METRICS: the cards (plugins included)
from protocols.registry import CardRegistry

HR_RECIPES = ("modcrop", "resize_to_multiple", "pad_center_replicate", "zero_pad_to_common")
REF_RECIPES = ("none", "modcrop", "pad_br_replicate", "pad_center_replicate")
RESIZE_BACKENDS = ("pil", "matlab", "matlab_u8")
SR_QUANTISATIONS = ("clamp_round", "round", "clamp", "none")
Y_FORMS = ("bt601_255", "bt601_256", "luma")


def center_pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) that pad (h, w) to the next multiple, centred (top = floor(Δ/2))."""
    dh, dw = (-h) % multiple, (-w) % multiple
    return dh // 2, dh - dh // 2, dw // 2, dw - dw // 2


@dataclass(frozen=True)
class ProtocolSpec:
    """A complete evaluation convention. Field values are plain data so the spec serialises to JSON.

    Every field but the descriptive ones is read by the sample-making or scoring code (``protocols.pipeline``,
    ``protocols.scoring``, the run engine's reference policy); ``tests/test_spec_fields.py`` checks it.
    Descriptive only (printed, never read by that code): ``name``, ``description``, ``source``, ``status``.
    Conventions that no preset varies are not fields: SSIM is always ``metrics.SSIM_DEFINITION`` and dataset
    values are always ``metrics.AGGREGATION`` (both printed in ``sentence``).
    """

    name: str
    description: str
    source: str
    status: str  # "code verified", "inferred", "suite default", ...
    scale: int = 4
    # --- image sizes ---------------------------------------------------------------------------
    hr_recipe: str = "modcrop"  # see HR_RECIPES
    hr_multiple: int = 4  # modcrop / resize_to_multiple / pad_center_replicate multiple (HR pixels)
    hr_multiple_by_dataset: tuple[tuple[str, int], ...] = ()  # MASA: 32 for CUFED5, 64 for Sun80/Urban100
    ref_recipe: str = "none"  # applied to the HR-resolution reference, see REF_RECIPES
    ref_multiple: int = 1
    # --- degradation ---------------------------------------------------------------------------
    resize_backend: str = "pil"  # LR, Ref↓ generation; see RESIZE_BACKENDS
    lr_quantise: bool = True  # round the LR to 8 bit (always true for the 8-bit PIL path)
    degrade_luma_only: bool = False  # legacy Y-first pipeline: degrade and score integer Y only
    grey_input: str = "replicate"  # "replicate" single-channel files into RGB, or "keep" (raw grey = Y)
    high_bit_depth: str = "reject"  # 16-bit files: "reject" or "to_8bit"
    # --- references ------------------------------------------------------------------------------
    reference_policy: str = "auto"  # "auto": the dataset's own reference ("pair") if it ships one, else self_lr
    reference_policy_by_dataset: tuple[tuple[str, str], ...] = ()
    # --- metrics ---------------------------------------------------------------------------------
    metrics: tuple[str, ...] = ("psnr_y", "ssim_y")
    y_form: str = "bt601_255"  # see Y_FORMS
    y_swap_rb: bool = False  # feed RGB to a BGR formula (the MASA-SR bug before commit 35cb0fa)
    y_round: bool = False  # integer luma (MATLAB rgb2ycbcr on uint8)
    sr_quantisation: str = "clamp_round"  # see SR_QUANTISATIONS
    sr_clip_levels: tuple[float, float] = (0.0, 255.0)  # legacy L clips Y to [16, 235]
    crop_border: int = 0
    crop_left: int = 0  # stereo SR convention: drop the leftmost 64 columns

    def __post_init__(self) -> None:
        checks = [
            ("hr_recipe", self.hr_recipe, HR_RECIPES),
            ("ref_recipe", self.ref_recipe, REF_RECIPES),
            ("resize_backend", self.resize_backend, RESIZE_BACKENDS),
            ("sr_quantisation", self.sr_quantisation, SR_QUANTISATIONS),
            ("y_form", self.y_form, Y_FORMS),
        ]
        for field_name, value, valid in checks:
            if value not in valid:
                raise UserError(f"{self.name}: {field_name}={value!r} is not one of {', '.join(valid)}")
        for metric in self.metrics:
            try:
                METRICS.lookup(metric)
            except UserError as error:
                raise UserError(f"{self.name}: {error}") from None

    def hr_multiple_for(self, dataset: str) -> int:
        return dict(self.hr_multiple_by_dataset).get(dataset, self.hr_multiple)

    def prepared_hw(self, file_hw: tuple[int, int], dataset: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """For an HR file of ``file_hw`` (H, W): (the HR size scored, before border crops; the size of the image
        that is degraded into the LR). ``zero_pad_to_common`` pads the degraded image further, to the size of the
        reference, which this does not know."""
        h, w = file_hw
        multiple = self.hr_multiple_for(dataset)
        if self.hr_recipe == "pad_center_replicate":
            top, bottom, left, right = center_pad_amounts(h, w, multiple)
            return (h, w), (h + top + bottom, w + left + right)
        cropped = (h - h % multiple, w - w % multiple)
        return cropped, cropped

    def reference_policy_for(self, dataset: str) -> str:
        return dict(self.reference_policy_by_dataset).get(dataset, self.reference_policy)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_metrics(self, metrics: tuple[str, ...]) -> ProtocolSpec:
        """This preset with its metric list replaced (``run --metrics``; repeats dropped); ``()`` keeps it.
        Unknown names are a UserError with suggestions."""
        return dataclasses.replace(self, metrics=tuple(dict.fromkeys(metrics))) if metrics else self

    def sentence(self, dataset: str | None = None) -> str:
        """One sentence stating the protocol, printed above every results table."""
        recipe = self.hr_recipe + (
            f"({self.hr_multiple_for(dataset or '')})" if self.hr_recipe != "zero_pad_to_common" else ""
        )
        colour = ", ".join(self.metrics)
        ref = self.reference_policy_for(dataset) if dataset else self.reference_policy
        return (
            f"Preset {self.name}: ×{self.scale}, HR {recipe}, LR by {self.resize_backend} bicubic"
            f"{' (8-bit)' if self.lr_quantise else ' (float)'}, reference {ref}, metrics {colour} "
            f"(Y {self.y_form}{', integer' if self.y_round else ''}), SR {self.sr_quantisation}, "
            f"border crop {self.crop_border} px, SSIM {SSIM_DEFINITION}, {AGGREGATION}."
        )


# Reference policies shared by several presets (dataset -> policy); the paper-specific ones are listed inline.
_SISR_SETS_SELF = (("set5", "self_lr"), ("set14", "self_lr"))
_SELF_REFERENCE = (
    ("urban100", "self_lr"),
    ("manga109", "self_lr"),
    *_SISR_SETS_SELF,
    ("b100", "self_lr"),
    ("sun80", "manifest"),
    ("cufed5", "level:1"),
)
_MASA_POLICIES = (
    ("cufed5", "stitch5_masa"),
    ("urban100", "self_lr"),
    ("manga109", "self_lr"),
    ("sun80", "manifest"),
    *_SISR_SETS_SELF,
)
MASA2021 = ProtocolSpec(
    name="masa2021",
    description="dvlab-research/MASA-SR test code: HR centred replicate padding (×32; ×64 Sun80/Urban100), "
    "SR cropped back, Y (÷255, BGR-correct), clamp+round, crop 0.",
    source="dvlab-research/MASA-SR test.py, TestSet/TestSet_multi (commit 35cb0fa fixes the channel order)",
    status="code verified",
    hr_recipe="pad_center_replicate",
    hr_multiple=32,
    hr_multiple_by_dataset=(("sun80", 64), ("urban100", 64), ("manga109", 64)),
    ref_recipe="pad_br_replicate",
    ref_multiple=16,
    reference_policy_by_dataset=_MASA_POLICIES,
)
C2MATCHING2021 = ProtocolSpec(
    name="c2matching2021",
    description=(
        "yumingj/C2-Matching test: mod-crop ×4, HR and Ref zero-padded to a common size, Pillow, Y "
        "(÷255), clamp+round, crop 4."
    ),
    source="yumingj/C2-Matching RefCUFEDDataset, ref_restoration_model.py; CUFED5_pairs.txt (level 1)",
    status="code verified",
    hr_recipe="zero_pad_to_common",
    crop_border=4,
    reference_policy_by_dataset=(
        ("cufed5", "level:1"),
        ("urban100", "self_lr"),
        ("manga109", "manifest"),
        ("sun80", "manifest"),
        *_SISR_SETS_SELF,
    ),
)
SISR_STD = ProtocolSpec(
    name="sisr_std",
    description="Standard SISR tables (EDSR/RCAN/CARN): MATLAB bicubic, 8-bit LR and SR, Y, crop = scale.",
    source="yulunzhang/RCAN Evaluate_PSNR_SSIM.m; golden protocol S",
    status="code verified",
    resize_backend="matlab",
    crop_border=4,
    reference_policy="none",
)

PRESETS: CardRegistry[ProtocolSpec] = CardRegistry(
    "preset",
    (
        ProtocolSpec(
            name="refsr",
            description="The suite's fair RefSR protocol, identical for every method.",
            source="RefSR-Bench default (protocols.md §4 refsr_std, crop per the foundation issue)",
            status="suite default",
            crop_border=4,
            reference_policy_by_dataset=_SELF_REFERENCE,
        ),
        ProtocolSpec(
            name="ttsr2020",
            description=(
                "researchmm/TTSR test code: mod-crop, Pillow, Ref mod-crop ×4, Y (÷256 form), round without "
                "clamp, crop 0."
            ),
            source=(
                "researchmm/TTSR dataset/cufed.py, utils.py calc_psnr_and_ssim; CUFED5 level 1 in code (paper "
                "27.09 used 5 stitched refs, recipe unknown)"
            ),
            status="code verified",
            ref_recipe="modcrop",
            ref_multiple=4,
            y_form="bt601_256",
            sr_quantisation="round",
            reference_policy_by_dataset=(
                ("cufed5", "level:1"),
                ("urban100", "self_lr"),
                ("manga109", "self_lr"),
                ("sun80", "manifest"),
                *_SISR_SETS_SELF,
            ),
        ),
        MASA2021,
        dataclasses.replace(
            MASA2021,
            name="masa2021_prefix",
            description="masa2021 with the pre-35cb0fa bug: RGB arrays fed to the BGR luma formula (R/B swapped).",
            source="dvlab-research/MASA-SR before commit 35cb0fa",
            status="code verified (historical)",
            y_swap_rb=True,
        ),
        C2MATCHING2021,
        dataclasses.replace(
            C2MATCHING2021,
            name="c2matching2021_official",
            description=(
                "c2matching2021 plus the official script's RGB numbers: psnr_rgb (correct) and "
                "psnr_rgb_uint8wrap_c2m (its uint8 (img1 - img2)**2, which wraps for errors of 16+ levels)."
            ),
            source="yumingj/C2-Matching mmsr/utils/metrics.py psnr on tensor2img's uint8 output (shared sources.md)",
            status="code verified (metric quirk reproduced by name)",
            metrics=("psnr_y", "ssim_y", "psnr_rgb", "psnr_rgb_uint8wrap_c2m"),
        ),
        ProtocolSpec(
            name="ssen2020",
            description="SSEN paper (no code): each CUFED5 level separately, Y; mod-crop, Pillow and crop 0 assumed.",
            source="SSEN CVPR 2020 Tables 1 and 3; protocols.md §4 (partly inferred)",
            status="partly inferred",
            reference_policy_by_dataset=(("cufed5", "level:1"), ("urban100", "self_lr"), *_SISR_SETS_SELF),
        ),
        dataclasses.replace(
            SISR_STD,
            name="ssen2020_sisr",
            description="SSEN Table 2 (self-similarity SISR): identical to sisr_std.",
            source="SSEN CVPR 2020 Table 2; values match the SISR literature",
            status="= sisr_std",
            reference_policy="self_lr",  # SSEN's self-similarity model takes the LR itself as its reference
        ),
        ProtocolSpec(
            name="e2ent2_2020",
            description=(
                "E2ENT² paper (no code): RGB metrics inferred (Y reported alongside), level 1, mod-crop, Pillow, "
                "clamp+round, crop 0 assumed."
            ),
            source="E2ENT² ECCVW 2020 Tables 1-2; colour space INFERRED, not stated (protocols.md §4)",
            status="inferred",
            metrics=("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"),
            reference_policy_by_dataset=(("cufed5", "level:1"), ("flickr1024", "pair")),
        ),
        ProtocolSpec(
            name="srntt2019",
            description=(
                "SRNTT TensorFlow code: mod-crop, scipy (= Pillow) bicubic, each level separately, Y assumed, "
                "round+clip, crop 0 assumed."
            ),
            source="ZZUTK/SRNTT; SRNTT issue #26 (colour space unanswered)",
            status="partly inferred",
            reference_policy_by_dataset=(("cufed5", "level:1"), ("urban100", "self_lr"), ("sun80", "manifest")),
        ),
        ProtocolSpec(
            name="srntt_port",
            description=(
                "S-aiueo32/srntt-pytorch: PIL resize to a multiple of 4, luma Y′ (0.299/0.587/0.114, no offset), "
                "clamp without rounding, crop 0."
            ),
            source="S-aiueo32/srntt-pytorch (kornia rgb_to_grayscale, PSNR peak 1.0)",
            status="code verified",
            hr_recipe="resize_to_multiple",
            y_form="luma",
            sr_quantisation="clamp",
            reference_policy_by_dataset=(("cufed5", "level:1"),),
        ),
        ProtocolSpec(
            name="ccnet2017",
            description=(
                "CC-Net/SS-Net paper: ×8, mod-crop ×8, Pillow bicubic assumed, RGB PSNR (peak 1.0 in [0, 1]), no "
                "rounding, crop 0 assumed."
            ),
            source="Zheng et al. BMVC 2017; the authors' CrossNet code for the metric conventions (inferred)",
            status="inferred",
            scale=8,
            hr_multiple=8,
            metrics=("psnr_rgb",),
            sr_quantisation="clamp",
        ),
        ProtocolSpec(
            name="mmagic_ttsr",
            description="open-mmlab/mmagic TTSR config: mod-crop, Pillow, level 1, RGB, crop 4.",
            source="open-mmlab/mmagic TTSR metafile (TTSR-rec 25.2433 / 0.7491)",
            status="code verified",
            metrics=("psnr_rgb", "ssim_rgb"),
            crop_border=4,
            reference_policy_by_dataset=(("cufed5", "level:1"),),
        ),
        SISR_STD,
        ProtocolSpec(
            name="sisr_legacy_y",
            description="VDSR-era Y-first MATLAB scripts: integer Y, float LR, SR clipped to [16, 235].",
            source="kjw0612/rcn methods/Bicubic.m, utils/compute_diff.m; golden protocol L",
            status="reproduces the literature bicubic rows of Set5/Set14/Urban100",
            resize_backend="matlab",
            lr_quantise=False,
            degrade_luma_only=True,
            grey_input="keep",
            y_round=True,
            sr_clip_levels=(16.0, 235.0),
            crop_border=4,
            reference_policy="none",
        ),
        ProtocolSpec(
            name="sisr_matlab_u8",
            description="RGB pipeline with MATLAB uint8 imresize semantics and integer Y.",
            source="RCAN Prepare_TestData_HR_LR.m + rgb2ycbcr on uint8; golden protocol M",
            status="reproduces the literature Manga109 bicubic row",
            resize_backend="matlab_u8",
            y_round=True,
            crop_border=4,
            reference_policy="none",
        ),
    ),
)


def register_preset(spec: ProtocolSpec) -> None:
    """Add a plugin's preset (``refsr-bench --plugin FILE``), e.g. one that reports a plugin metric; it must not
    shadow a built-in preset."""
    PRESETS.register(spec)


def get_preset(name: str) -> ProtocolSpec:
    """The preset called ``name``; an unknown name is a UserError listing the valid ones."""
    return PRESETS.lookup(name)


def list_presets(pattern: str = "*") -> list[str]:
    """Preset names matching an fnmatch ``pattern``, sorted."""
    return PRESETS.names(pattern)
