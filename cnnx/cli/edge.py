"""Edge-runtime commands, ``cnnx infer`` and ``cnnx eval``: no torch on this path."""

from __future__ import annotations

import sys
from typing import Any

import click

from cnnx.cli import emit_json, floats_option, main, names_option, size_option
from cnnx.cli.console import Console

# ---------------------------------------------------------------- infer, eval (edge runtime: no torch)


def _edge_env() -> None:
    """Before numpy loads: its OpenBLAS would start a thread per core, for nothing bigger than
    the runtime's 6x6 least-squares fit; one thread starts faster on a small device."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _spec_options(command: Any) -> Any:
    """--mean, --std, --size, --classes: how to feed an ONNX file that carries no cnnx spec."""
    for option in reversed(
        [
            click.option(
                "--mean",
                callback=floats_option,
                help="For an ONNX file without a cnnx spec: per-channel "
                "mean of pixels in [0, 1], e.g. 0.1307 or 0.485,0.456,0.406 (one value serves every channel).",
            ),
            click.option(
                "--std",
                callback=floats_option,
                help="For an ONNX file without a cnnx spec: per-channel std, like --mean.",
            ),
            click.option(
                "--size",
                callback=size_option,
                help="For an ONNX file without a cnnx spec: input size, N "
                "or HxW (e.g. 28 or 32x32). The colour mode follows the model's channels (1 = greyscale, 3 = RGB). "
                "[default: the graph's, when it takes one size]",
            ),
            click.option(
                "--classes",
                callback=names_option,
                help="For an ONNX file without a cnnx spec: class "
                "names, comma-separated [default: 0, 1, ... as many as the model outputs].",
            ),
        ]
    ):
        command = option(command)
    return command


_THREADS_HELP = "onnxruntime intra-op threads; 0 = the machine's physical cores. Idle threads never spin."
_PREPROCESS_HELP = "auto = the recipe the model's spec names (e.g. mnist-digit); plain = resize only."


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--model",
    "-m",
    type=click.Path(),
    help="A model file from `cnnx export` (.onnx, .ort, OpenVINO .xml, .tflite), or a training run folder: "
    "the ONNX file `cnnx export RUN` wrote into it (RUN/best.onnx; RUN/last.onnx when it has no best.pt). "
    "[default: the MNIST model shipped with cnnx]",
)
@click.option(
    "--top-k",
    "-k",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Best classes to list per image, with softmax probabilities.",
)
# one flag each, not one shared value: two of them given is a mistake to say, not a silent last-one-wins
@click.option("--table", "as_table", is_flag=True, help="Aligned table on stdout. [default]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, one per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True, help="Images per model call.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help=_THREADS_HELP)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Processes decoding images; 0 = the physical cores for 2,048 or more files on Linux, "
    "else none; 1 = decode in the main process.",
)
@click.option(
    "--preprocess",
    type=click.Choice(["auto", "plain", "mnist-digit"]),
    default="auto",
    show_default=True,
    help=_PREPROCESS_HELP + " mnist-digit: the digit recipe, e.g. for a model without a cnnx spec.",
)
@_spec_options
@click.option(
    "--reject/--no-reject",
    default=None,
    help="Refuse images that are none of the model's classes (label 'refused'; JSON: label null and "
    "'refused' saying why), by the threshold the model file carries. [default: when the file carries one]",
)
@click.option(
    "--save-preprocessed",
    type=click.Path(file_okay=False),
    help="Write exactly what the model saw, one PNG per image, into this folder (made if missing).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr. [default: on for over 1,000 images when stderr is a terminal]",
)
def infer(
    images: tuple[str, ...],
    top_k: int,
    as_table: bool,
    as_json: bool,
    as_csv: bool,
    save_preprocessed: str | None,
    progress: bool | None,
    **model_options: Any,
) -> None:
    """Classify images: files, folders (searched recursively) and glob patterns, without torch.

    Probabilities are calibrated: the model file's temperature, fitted on held-out training
    images, is applied. An image refused as none of the classes (e.g. a letter given to a digit
    model) is listed as refused, with its best guess; a refusal does not change the exit code.

    Exit code 0 when every image was classified or refused; 1 when any input could not be (a file
    that cannot be read, a folder with no images, a pattern that matches nothing: each
    named on stderr, the others still classified); 2 for a bad model or option.

    Example: cnnx infer digit.png photos/ --top-k 3
    """
    fmt = _output_format(table=as_table, json=as_json, csv=as_csv)
    _edge_env()
    from cnnx.runtime.output import Formatter
    from cnnx.runtime.sources import expand

    if save_preprocessed:
        _save_folder(save_preprocessed)
    paths, problems = expand(images)
    clf = _classifier(**model_options)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if not paths:
        click.echo("error: no image to classify", err=True)
        sys.exit(1)
    out = Formatter(fmt, min(top_k, clf.spec.num_classes), paths, clf.spec.classes)  # only so many classes
    failed = _classify(clf, paths, out, save_preprocessed, progress) + len(problems)
    if save_preprocessed:
        saved = len(paths) + len(problems) - failed
        click.echo(f"wrote {saved} preprocessed image{'s' * (saved != 1)} to {save_preprocessed}", err=True)
    if failed:
        click.echo(f"error: {failed} of {len(paths) + len(problems)} inputs could not be classified", err=True)
        sys.exit(1)


def _output_format(**given: bool) -> str:
    """The one output format the switches name (``table`` when none does); two or more: a ConfigError."""
    chosen = [name for name, on in given.items() if on]
    if len(chosen) > 1:
        from cnnx.core.errors import ConfigError

        switches = [f"--{name}" for name in chosen]
        named = f"{', '.join(switches[:-1])} and {switches[-1]}"
        raise ConfigError(f"{named} cannot be combined", f"give one of {', '.join(f'--{n}' for n in given)}")
    return chosen[0] if chosen else "table"


def _save_folder(folder: str) -> None:
    """Make the --save-preprocessed folder before any image is read: a folder that cannot be made is
    one error for the command, not one per image with every prediction lost."""
    from pathlib import Path

    from cnnx.core.errors import ConfigError
    from cnnx.core.fileio import folder_problem

    why = folder_problem(Path(folder), keep=True)
    if why:
        raise ConfigError(f"cannot write the --save-preprocessed folder {folder}: {why}", "pick another folder")


def _classifier(
    model: str | None, preprocess: str, mean: Any, std: Any, size: Any, classes: Any, **options: Any
) -> Any:
    """The Classifier the command's model options describe (threads, batch_size, workers pass through)."""
    from cnnx.runtime.predict import Classifier

    recipe = None if preprocess == "auto" else preprocess
    # a run folder means its exported ONNX file (cnnx.runtime.backends.open_model)
    return Classifier(model, preprocess=recipe, mean=mean, std=std, size=size, classes=classes, **options)


def _classify(clf: Any, paths: list[str], out: Any, save_dir: str | None, progress: bool | None) -> int:
    """Print one line (or JSON object, or CSV row) per image; the number of images that failed."""
    failed = 0
    with Console(len(paths), progress, "classifying") as console:
        header = out.header()
        if header:
            console.echo(header)
        for pred in clf.iter_predict(paths, top_k=out.k, save_dir=save_dir):
            if not pred.ok:
                failed += 1
                console.echo(f"error: {pred.error}", err=True)
            line = out.row(pred)
            if line is not None:
                console.echo(line)
            console.advance(1)
    return failed


@main.command("eval")
@click.argument("model", required=False, type=click.Path(exists=True), metavar="[MODEL_OR_RUN]")
@click.option(
    "--data",
    "--data-dir",
    "data_dir",
    required=True,
    envvar="CNNX_DATA_DIR",
    type=click.Path(file_okay=False),
    help="A folder with MNIST IDX files (t10k-images-idx3-ubyte[.gz] and labels), or one "
    "sub-folder of images per class, named after the model's classes. [default: $CNNX_DATA_DIR]",
)
@click.option(
    "--split",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
    help="Which IDX files to read; for an image folder laid out as train/ and test/ (or val/), which of them.",
)
@click.option(
    "--val-split",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="An image folder without train/ and test/ sub-folders: score only the share `cnnx train "
    "--val-split V --seed S` held out as its test split (with --split train: the rest). [default: the whole folder]",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="With --val-split: the seed the training run split with."
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Images per model call."
)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help=_THREADS_HELP)
@click.option(
    "--preprocess",
    type=click.Choice(["auto", "plain"]),
    default="auto",
    show_default=True,
    help="Image folders: " + _PREPROCESS_HELP + " IDX images are already model input.",
)
@_spec_options
@click.option("--confusion", type=click.Path(dir_okay=False), help="Also draw the confusion matrix into this PNG.")
@click.option(
    "--errors",
    type=click.Path(dir_okay=False),
    help="Also draw the misclassified images, as the model saw them, with true and predicted "
    "labels into this PNG, most confident mistakes first.",
)
@click.option(
    "--reliability",
    type=click.Path(dir_okay=False),
    help="Also draw the reliability diagram (accuracy against confidence, 15 bins) before and after "
    "the model's calibration into this PNG.",
)
@click.option(
    "--errors-max",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most misclassified images drawn by --errors.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print the result as JSON on stdout (every misclassified image is listed under "misclassified").',
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr. [default: on for over 1,000 images when stderr is a terminal]",
)
def eval_cmd(
    model: str | None,
    data_dir: str,
    split: str,
    val_split: float | None,
    seed: int,
    batch_size: int,
    preprocess: str,
    as_json: bool,
    progress: bool | None,
    **options: Any,
) -> None:
    """Accuracy and confusion matrix of MODEL_OR_RUN (.onnx; .pt, a run folder or TorchScript when
    torch is installed) on --data.

    MODEL_OR_RUN defaults to the MNIST model shipped with cnnx. A run folder means its best.pt (its
    last.pt when it has no best.pt). Exit code 1 when an image of an image folder could not be read
    (it is named on stderr and left out).

    Example: cnnx eval model.onnx --data ~/.cache/cnnx/data --confusion confusion.png --errors errors.png
    """
    _edge_env()
    from pathlib import Path

    from cnnx.core.calibration import describe
    from cnnx.runtime.evaluate import confusion_table, evaluate, load_labelled
    from cnnx.runtime.predict import resolve_model
    from cnnx.tools.modelfile import open_model

    pictures = {k: options.pop(k) for k in ("confusion", "errors", "errors_max", "reliability")}
    path = resolve_model(model)
    net = open_model(path, **options)  # threads, and --mean/--std/--size/--classes for a file without a spec
    data = load_labelled(data_dir, net.spec, split, val_split, seed)
    sub_folder = data.kind == "image-folder" and data.source != str(Path(data_dir))  # its train/ or test/
    whole = val_split is None and data.kind == "image-folder" and not sub_folder
    if whole and net.spec.dataset and net.spec.dataset == Path(data_dir).resolve().name:
        click.echo(
            f"note: {path.name} was trained on a folder named {net.spec.dataset}: scored whole, its training "
            "images count too; give --val-split and --seed as at training to score only its test share",
            err=True,
        )
    recipe = None if preprocess == "auto" else "plain"
    with Console(len(data), progress, "evaluating") as console:
        result = evaluate(net, data, batch_size, recipe, progress=console.advance, model_name=str(path))
    drawn = _draw(result, f"{path.name} on {data_dir}", **pictures)
    for line in result.failed:
        click.echo(f"error: {line}", err=True)
    if as_json:
        errors_png = pictures["errors"] if result.mistakes else None
        emit_json(
            {
                **result.to_dict(),
                "confusion_png": pictures["confusion"],
                "errors_png": errors_png,
                "reliability_png": pictures["reliability"],
                **({"val_split": val_split, "seed": seed} if val_split is not None else {}),
            }
        )
    else:
        kind = f"MNIST IDX, {split} split" if data.kind == "mnist-idx" else "image folders"
        if sub_folder:
            kind += f" in {Path(data.source).name}/"
        elif val_split is not None:
            kind += f", the {split} share of --val-split {val_split:g} --seed {seed}"
        click.echo(
            f"{path} on {data_dir} ({kind}): accuracy {100 * result.accuracy:.2f}% "
            f"({result.correct}/{result.total}) in {result.seconds:.2f} s"
        )
        click.echo(confusion_table(result))
        for line in describe(result.honesty):
            click.echo(line)
        for line in drawn.values():
            click.echo(line)
    if result.failed:
        click.echo(f"error: {len(result.failed)} of {len(data)} images could not be read", err=True)
        sys.exit(1)


def _draw(
    result: Any, title: str, confusion: str | None, errors: str | None, errors_max: int, reliability: str | None
) -> dict[str, str]:
    """Draw the PNGs asked for; returns {what: the line saying where it went}."""
    from cnnx.core.plots import draw_confusion, draw_errors, draw_reliability

    said = {}
    if reliability and result.honesty:
        t = result.honesty["temperature"]
        draw_reliability(result.honesty["reliability"], reliability, f"{title}: temperature {t:.3f}")
        said["reliability"] = f"reliability diagram drawn in {reliability}"
    title += f": accuracy {100 * result.accuracy:.2f}%"
    if confusion:
        draw_confusion(result.confusion, result.classes, confusion, title)
        said["confusion"] = f"confusion matrix drawn in {confusion}"
    if errors and result.mistakes:
        shown = result.worst(errors_max)
        draw_errors(shown, result.classes, errors, f"{title}; {len(shown)} of {len(result.mistakes)} mistakes")
        said["errors"] = f"{len(shown)} of {len(result.mistakes)} misclassified images drawn in {errors}"
    elif errors:
        said["errors"] = f"no misclassified images: {errors} not written"
    return said
