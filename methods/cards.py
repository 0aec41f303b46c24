"""Method cards: every fact about a registered method, as frozen data, readable without building a network.

A card names the factory that builds the method (``"module:function"``, imported only when the method is
built), the scales it supports, its inputs, its task, its parts, its official weight files (file name,
sha256 where known, licence, download source) and its paper. Listing, ``weights``, ``audit``, the demo
and the tests read cards; the factories derive their ``MethodInfo`` from them
(``methods.base.info_from_card``), and ``tests/test_method_contract.py`` checks every card against the
method it builds.

The card types are in ``methods.card_types``. This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import replace

from methods.card_types import MethodCard, WeightFile

# ---------------------------------------------------------------------------------------------------
# built-in cards

_TORCHVISION_VGG19 = WeightFile(
    file_name="vgg19-dcbb9e9d.pth",
    url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    sha256=None,  # only torchvision's sha256 prefix dcbb9e9d is known
    license="BSD-3-Clause (torchvision); ImageNet-trained",
    role="vgg",
    layout="torchvision.models:vgg19",
)

_BICUBIC = MethodCard(
    name="bicubic",
    factory="methods.bicubic:bicubic",
    task="sisr",
    scales=(2, 3, 4, 8),
    any_scale_from=2,
    inputs=("lr",),
    title="Bicubic interpolation (pil)",
    venue="-",
    year=0,
    official_repo=None,
    license="-",
    trained=False,
)

_MASA_REPO = "https://github.com/dvlab-research/MASA-SR"
_MASA_LICENSE = "no licence file in the official repository (all rights reserved); research use of the weights"


_MASA_DRIVE = "https://drive.google.com/drive/folders/1O9Y4UK1PFoFKOsYTQqcQJCA_VvBWp29N"  # README @ 80d1bd8


def _masa_file(file_name: str) -> WeightFile:
    return WeightFile(
        file_name=file_name,
        url=_MASA_DRIVE,
        sha256=None,
        license=_MASA_LICENSE,
        role="net",
        source="gdrive_folder",
        note=f"the Google Drive folder linked from {_MASA_REPO} (README); the repo keeps it in pretrained_weights/",
    )


_MASA_REC = MethodCard(
    name="masa_rec",
    factory="methods.masa:masa_rec",
    task="refsr",
    scales=(4,),
    inputs=("lr", "ref", "ref_lr"),
    title="MASA-SR: Matching Acceleration and Spatial Adaptation for Reference-Based Image Super-Resolution",
    venue="CVPR",
    year=2021,
    official_repo=_MASA_REPO,
    license=_MASA_LICENSE,
    variant="rec",
    aliases=("masa",),
    weights=(_masa_file("masa_rec.pth"),),
    parts={
        "encoder": "enc",
        "matching": "matching",
        "extraction": "transfer",
        "decoder": "decoder",
        "spatial_adaptation": "decoder.pAda",
    },
    has_match=True,
    lr_multiple=8,
    parameters=4_028_291,  # masa.md: 210 entries, 4,028,291 parameters
)

_TTSR_REPO = "https://github.com/researchmm/TTSR"


_TTSR_DRIVE = "https://drive.google.com/drive/folders/1CTm-r3hSbdYVCySuQ27GsrqXhhVOS-qh"  # README @ 550e4c9


def _ttsr_file(file_name: str) -> WeightFile:
    return WeightFile(
        file_name=file_name,
        url=_TTSR_DRIVE,
        sha256=None,
        license="MIT",
        role="net",
        source="gdrive_folder",
        note=f"the Google Drive folder linked from {_TTSR_REPO} (README; also OneDrive and Baidu links there)",
    )


_TTSR_REC = MethodCard(
    name="ttsr_rec",
    factory="methods.ttsr:ttsr_rec",
    task="refsr",
    scales=(4,),
    inputs=("lr", "ref"),
    title="Learning Texture Transformer Network for Image Super-Resolution",
    venue="CVPR",
    year=2020,
    official_repo=_TTSR_REPO,
    license="MIT",
    variant="rec",
    aliases=("ttsr",),
    weights=(_ttsr_file("TTSR-rec.pt"),),
    parts={
        "matching": "SearchTransfer.relevance",
        "search_transfer": "SearchTransfer",
        "extractor": "LTE",
        "backbone": "MainNet",
    },
    has_match=True,
    parameters=6_729_615,  # ttsr.md: released layout without the training-only LTE copy
)

_SRNTT_PORT = "https://github.com/S-aiueo32/srntt-pytorch"
_SRNTT_DRIVE = "https://drive.google.com/drive/folders/1yrIft2GXcDR-IW_uFLy69caVqEaByFDf"  # docs/sources.md


def _srntt_files(generator_file: str) -> tuple[WeightFile, ...]:
    generator = WeightFile(
        file_name=generator_file,
        url=_SRNTT_DRIVE,
        sha256=None,
        license="Apache-2.0 (port repository; weights licence unstated)",
        role="net_g",
        source="gdrive_folder",
        note=f"the Google Drive folder linked from {_SRNTT_PORT} (README; the file names there are undocumented)",
    )
    return (generator, _TORCHVISION_VGG19)


_SRNTT = MethodCard(
    name="srntt",
    factory="methods.srntt:srntt",
    task="refsr",
    scales=(4,),
    inputs=("lr", "ref"),
    title="Image Super-Resolution by Neural Texture Transfer",
    venue="CVPR",
    year=2019,
    official_repo=_SRNTT_PORT,  # the PyTorch port evaluated here; the TF original is ZZUTK/SRNTT
    license="Apache-2.0 (srntt-pytorch port)",
    variant="gan",
    weights=_srntt_files("netG_100.pth"),
    parts={
        "matching": "swapper.correlation",
        "extractor": "vgg",
        "content_extractor": "content_extractor",
        "texture_transfer": "texture_transfer",
    },
    has_match=True,
)

_C2_REPO = "https://github.com/yumingj/C2-Matching"
_C2_DRIVE = "https://drive.google.com/drive/folders/1dTkXMzeBrHelVQUEx5zib5MdmvqDaSd9"  # README @ 6d60149
_C2_LICENSE = "Apache-2.0 (repository LICENSE; its README says MIT)"


def _c2_files(restoration_file: str) -> tuple[WeightFile, ...]:
    def official(file_name: str, role: str) -> WeightFile:
        return WeightFile(
            file_name=file_name,
            url=_C2_DRIVE,
            sha256=None,
            license=_C2_LICENSE,
            role=role,
            source="gdrive_folder",
            note=f"the Google Drive folder linked from {_C2_REPO} (README; the repo keeps it in "
            "experiments/pretrained_models/)",
        )

    return (
        official(restoration_file, "net_g"),
        official("feature_extraction.pth", "net_extractor"),
        replace(_TORCHVISION_VGG19, role="net_map.vgg"),
    )


_C2_REC = MethodCard(
    name="c2_matching_rec",
    factory="methods.c2_matching:c2_matching_rec",
    task="refsr",
    scales=(4,),
    inputs=("lr", "ref"),
    title="Robust Reference-based Super-Resolution via C²-Matching",
    venue="CVPR",
    year=2021,
    official_repo=_C2_REPO,
    license=_C2_LICENSE,
    variant="rec",
    aliases=("c2_matching",),
    weights=_c2_files("c2_matching_restoration_mse.pth"),
    parts={
        "matching": "net_map.matching",
        "extractor": "net_extractor",
        "vgg": "net_map.vgg",
        "restoration": "net_g",
        "content": "net_g.content_extractor",
        "aggregation": "net_g.dyn_agg_restore",
    },
    has_match=True,
)

_SSEN = MethodCard(
    name="ssen",
    factory="methods.ssen:ssen",
    task="refsr",
    scales=(4,),
    inputs=("lr", "ref"),
    title="Robust Reference-based Super-Resolution with Similarity-Aware Deformable Convolution",
    venue="CVPR",
    year=2020,
    official_repo=None,
    license="benchmark reimplementation from the paper (no official code or weights)",
    variant="rec",
    parts={
        "matching": "ssen",
        "alignment": "ssen",
        "lr_head": "lr_head",
        "ref_head": "ref_head",
        "extractor": "trunk",
        "fusion": "fusion",
        "reconstruction": "recon_body",
        "upsampler": "upsampler",
    },
    lr_multiple=8,
    parameters=3_257_515,  # ssen.md §4
)

_REFSR_NET = MethodCard(
    name="refsr_net",
    factory="methods.refsr_net:refsr_net",
    task="refsr",
    scales=(8,),
    inputs=("lr", "ref"),
    title="Learning Cross-scale Correspondence and Patch-based Synthesis for Reference-based "
    "Super-Resolution (RefSR-Net: CC-Net + SS-Net)",
    venue="BMVC",
    year=2017,
    official_repo=None,
    license="no official code; reimplementation under the project's MIT license",
    variant="rec",
    parts={
        "matching": "matching",
        "extractor": "ccnet",
        "backbone": "ssnet",
        "lr_features": "ssnet.lr_module",
        "hr_features": "ssnet.hr_module",
        "fusion": "ssnet.pred",
    },
    has_match=True,
)

_ZNCC = MethodCard(
    name="zncc",
    factory="methods.classical:zncc",
    task="matcher",
    scales=(1, 2, 3, 4, 8),
    inputs=("lr", "ref"),
    title="Zero-mean normalised cross-correlation block matching (baseline row of CC-Net Table 2)",
    venue="BMVC",
    year=2017,
    official_repo=None,
    license="n/a (own implementation)",
    variant="classical",
    has_match=True,
    trained=False,
)
_DENSE_SIFT = replace(
    _ZNCC,
    name="dense_sift",
    factory="methods.classical:dense_sift",
    title="Dense SIFT descriptors (Lowe, 'Distinctive image features from scale-invariant keypoints')",
    venue="IJCV",
    year=2004,
)

BUILTIN_CARDS: tuple[MethodCard, ...] = (
    _BICUBIC,
    replace(_BICUBIC, name="bicubic_matlab", factory="methods.bicubic:bicubic_matlab",
            title="Bicubic interpolation (matlab)"),
    replace(_BICUBIC, name="bicubic_matlab_u8", factory="methods.bicubic:bicubic_matlab_u8",
            title="Bicubic interpolation (matlab_u8)"),
    MethodCard(
        name="carn_m",
        factory="methods.carn_m:carn_m",
        task="sisr",
        scales=(2, 3, 4),
        inputs=("lr",),
        title="Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual Network",
        venue="ECCV",
        year=2018,
        official_repo="https://github.com/nmhkahn/CARN-pytorch",
        license="MIT",
        weights=(
            WeightFile(
                file_name="carn_m.pth",
                url="https://github.com/nmhkahn/CARN-pytorch/raw/master/checkpoint/carn_m.pth",
                sha256="d48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff",
                license="MIT",
            ),
        ),
        parts={"backbone": "network"},
    ),
    _MASA_REC,
    replace(_MASA_REC, name="masa_gan", factory="methods.masa:masa_gan", variant="gan", aliases=(),
            weights=(_masa_file("masa.pth"),)),
    _TTSR_REC,
    replace(_TTSR_REC, name="ttsr_gan", factory="methods.ttsr:ttsr_gan", variant="gan", aliases=(),
            weights=(_ttsr_file("TTSR.pt"),)),
    _SRNTT,
    replace(_SRNTT, name="srntt_rec", factory="methods.srntt:srntt_rec", variant="rec",
            weights=_srntt_files("netG_pre005.pth")),
    _C2_REC,
    replace(_C2_REC, name="c2_matching_gan", factory="methods.c2_matching:c2_matching_gan", variant="gan",
            aliases=(), weights=_c2_files("c2_matching_restoration.pth")),
    MethodCard(
        name="crossnet",
        factory="methods.crossnet:crossnet",
        task="refsr",
        scales=(4, 8),
        inputs=("lr", "ref"),
        title="CrossNet: An End-to-end Reference-based Super Resolution Network using Cross-scale Warping",
        venue="ECCV",
        year=2018,
        official_repo="https://github.com/htzheng/ECCV2018_CrossNet_RefSR",
        license="official code has no licence file; no weights released",
        variant="rec",
        parts={"alignment": "FlowNet", "encoder": "Encoder", "decoder": "UNet_decoder_2"},
        has_match=True,
    ),
    _SSEN,
    replace(
        _SSEN,
        name="ssen_self",
        factory="methods.ssen:ssen_self",
        task="sisr",
        inputs=("lr",),
        parts={
            "matching": "ssen",
            "alignment": "ssen",
            "head": "head",
            "backbone": "groups",
            "fusion": "fusion",
            "upsampler": "upsampler",
        },
        parameters=None,
    ),
    replace(
        _SSEN,
        name="ssen_baseline",
        factory="methods.ssen:ssen_baseline",
        task="sisr",
        inputs=("lr",),
        parts={"lr_head": "lr_head", "extractor": "trunk", "reconstruction": "recon_body", "upsampler": "upsampler"},
        lr_multiple=1,
        parameters=1_517_571,  # ssen.md §4.4 (EDSR-baseline x4 + bicubic skip)
    ),
    MethodCard(
        name="e2ent2",
        factory="methods.e2ent2:e2ent2",
        task="refsr",
        scales=(4,),
        inputs=("lr", "ref"),
        title="Feature Representation Matters: End-to-End Learning for Reference-based Image Super-resolution",
        venue="ECCV Workshops",
        year=2020,
        official_repo=None,
        license="benchmark reimplementation from the paper (no official code or weights)",
        variant="gan",
        parts={"matching": "correlation", "swap": "swap", "extractor": "encoder", "res1": "res1", "res2": "res2"},
        has_match=True,
        parameters=3_402_566,  # e2ent2.md §4
    ),
    _REFSR_NET,
    replace(_REFSR_NET, name="refsr_net_x4", factory="methods.refsr_net:refsr_net_x4", scales=(4,)),
    _ZNCC,
    replace(_ZNCC, name="zncc_blurry", factory="methods.classical:zncc_blurry"),
    replace(
        _ZNCC,
        name="patchmatch",
        factory="methods.classical:patchmatch",
        title="PatchMatch: a randomized correspondence algorithm for structural image editing",
        venue="SIGGRAPH",
        year=2009,
    ),
    _DENSE_SIFT,
    replace(_DENSE_SIFT, name="dense_sift_blurry", factory="methods.classical:dense_sift_blurry"),
)


def builtin_card(name: str) -> MethodCard:
    """The built-in card called ``name`` (KeyError for an unknown name: a programming error, not a user's)."""
    return _BY_NAME[name]


_BY_NAME: dict[str, MethodCard] = {card.name: card for card in BUILTIN_CARDS}
