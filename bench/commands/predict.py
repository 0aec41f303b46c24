"""``refsr-bench predict``: one image through one method, PNG in, PNG out.

    refsr-bench predict -m carn_m --lr in.png --out sr.png
    refsr-bench predict -m masa_rec --lr in.png --ref ref.png --out sr.png

The method is built and its official weights loaded by the code ``run`` uses (``--weights``, ``$REFSR_WEIGHTS``;
random weights are refused unless ``--allow-random-weights``). The LR PNG is read as 8-bit RGB (a grey file is
replicated), the reference (at HR resolution) goes through the preset's reference recipe and its ÷scale copy is
made as in a run; without ``--ref`` a method that needs one gets the LR itself (policy ``self_lr``). The output
is quantised by the preset (default ``refsr``: clamp and round) with the code that quantises what ``run``
scores, and written as 8-bit PNG: for an LR that ``run`` made (uint8 levels), the PNG equals byte for byte the
one ``run --save-images`` writes. Dataset-side recipes (HR crop or padding, degradation) are not applied: the
LR is taken as given.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from protocols.core import UserError


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="super-resolve one PNG with one method (real weights), write the SR as PNG",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-m", "--method", required=True, help="a registered method (see `list methods`)")
    parser.add_argument("--lr", required=True, help="the low-resolution input image (PNG or any 8-bit image)")
    parser.add_argument("--ref", help="reference image at HR resolution (RefSR methods; default: the LR itself)")
    parser.add_argument("--out", required=True, help="where to write the SR image (PNG)")
    parser.add_argument("--scale", type=int, help="upscaling factor (default: the method's default scale)")
    parser.add_argument("--preset", default="refsr",
                        help="whose reference recipe and output quantisation to use (default: %(default)s)")
    parser.add_argument("--weights", action="append",
                        help="weights folder (default: $REFSR_WEIGHTS), METHOD=FILE, or FILE")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument("--allow-random-weights", action="store_true",
                        help="run without official weights (plumbing tests only; the output is not a result)")
    parser.set_defaults(handler=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from bench.results.records import write_atomic, write_error
    from bench.results.rundir import check_device
    from methods.registry import card
    from methods.weights import load_method  # the loading code `run` uses
    from protocols.imageio import levels_png_bytes, read_image
    from protocols.pipeline import reference_inputs
    from protocols.resize import from_uint8_array
    from protocols.scoring import output_levels
    from protocols.spec import get_preset

    method_card = card(args.method)
    if method_card.task == "matcher":
        raise UserError(f"{method_card.name} is a matcher, not an SR method; use `refsr-bench match`")
    scale = args.scale if args.scale is not None else method_card.default_scale
    if not method_card.supports(scale):
        raise UserError(f"{method_card.name} does not support ×{scale}; scales: {method_card.scales_text()}")
    spec = get_preset(args.preset)
    spec = dataclasses.replace(spec, scale=scale)
    check_device(args.device)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: write a .png file (lossless, so the output is exactly the SR levels)")
    lr = from_uint8_array(read_image(args.lr))
    ref_array = read_image(args.ref) if args.ref else None
    weights = tuple(args.weights) if args.weights else None
    method, problem = load_method(method_card.name, scale, args.device, weights, (method_card.name,))
    record_name = method_card.name
    if problem is not None:
        if not args.allow_random_weights:
            raise UserError(f"{method_card.name}: {problem}. predict needs real weights "
                            "(or --allow-random-weights for plumbing tests; the output is not a result)")
        print(f"warning: {method_card.name}: {problem}; running with random weights")
        record_name += " (random weights)"
    if method.info.needs_reference:  # as the runner calls methods (their predict runs without autograd)
        ref, ref_lr = reference_inputs(ref_array, lr, spec, self_lr=True)
        assert ref is not None and ref_lr is not None
        sr = method.predict(lr.to(args.device), ref.to(args.device), ref_lr.to(args.device))
    else:
        if ref_array is not None:
            print(f"note: {method_card.name} takes no reference; --ref is ignored")
        sr = method.predict(lr.to(args.device))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(out.parent, error) from None
    write_atomic(out, levels_png_bytes(output_levels(sr.cpu(), spec, grey=spec.degrade_luma_only)))
    height, width = sr.shape[2:]
    print(f"wrote {out} ({width}x{height}, {record_name} ×{scale}, preset {spec.name} quantisation)")
    return 0
