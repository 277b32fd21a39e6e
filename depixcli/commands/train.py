"""`depix train CROPDIR -o RUNDIR`: train the STN aligner and the reconstruction U-Net (+ PatchGAN)."""

import click

from depixcli.commands.common import interrupted_exit, user_errors

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}

# CLI parameter -> TrainConfig field ("model_<name>" = ModelConfig field); applied only when given explicitly
OVERRIDES = {
    "stage": "stage", "steps": "steps", "stn_steps": "stn_steps", "batch_size": "batch_size", "lr": "lr",
    "width": "model_width", "window": "model_window", "residual": "model_residual", "stride": "model_stride",
    "perceptual": "perceptual", "time_limit": "time_limit_min", "schedule_minutes": "schedule_minutes",
    "device": "device", "workers": "workers", "seed": "seed",
    "compile_": "compile", "init_stn": "init_stn", "val_every": "val_every", "ckpt_every": "ckpt_every",
    "log_every": "log_every", "arch": "model_arch", "compact_width": "model_compact_width",
    "compact_blocks": "model_compact_blocks", "stills": "stills", "stills_fraction": "stills_fraction",
    "ckpt_minutes": "ckpt_minutes", "val_minutes": "val_minutes", "init": "init",
    "grid_input": "model_grid_input", "align": "model_align", "w_align": "w_align", "cpu_bf16": "cpu_bf16",
    "w_identity": "w_identity", "identity_samples": "identity_samples", "w_temporal": "w_temporal",
    "temporal_samples": "temporal_samples",
}
# --preset: TrainConfig changes (as OVERRIDES' targets) applied to a new run before the flags given
PRESETS = {
    "cpu": {"model_arch": "compact", "model_use_stn": False, "model_window": 2, "model_stride": 3, "stage": "recon",
            "model_grid_input": True, "model_align": True, "gan": False, "perceptual": "none",
            "lr": 5e-4},  # scripts/train_cpu.sh: the shipped model's recipe (+ bf16 where the CPU has it)
    "gpu": {},  # TrainConfig's defaults: the paper's networks and losses
}
PRESET_TEXT = {
    "cpu": "compact net at the mosaic's resolution with grid maps and a 32 px flow aligner (no STN), L1 loss "
           "(no GAN, no perceptual loss), F = 5 frames 3 apart, lr 5e-4, bf16 autocast where the CPU supports it: "
           "the shipped model's CPU recipe",
    "gpu": "the paper's STN + U-Net, L1 + VGG perceptual + PatchGAN losses",
}


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("crop_dir", metavar="CROPDIR", type=click.Path(file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run directory: config.json, checkpoint.pt, log.jsonl, model.safetensors. "
                   "Holding a checkpoint, the run resumes (CLI flags override its config).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TrainConfig JSON (e.g. a run's config.json); flags given here override it.")
@click.option("--preset", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
              help="Recipe of a new run, before the flags given here. cpu: " + PRESET_TEXT["cpu"] + ". gpu: "
                   + PRESET_TEXT["gpu"] + ". auto: that of --arch when given (unet: gpu), else gpu when CUDA is "
                   "available (and --device is not cpu), else cpu. "
                   "Not applied when resuming, nor over --config unless given.")
@click.option("--stage", type=click.Choice(["stn", "recon", "all"]), default=None,
              help="stn: aligner only; recon: U-Net + GAN with the run's trained STN; all: both in turn "
                   "[default: preset cpu: recon; gpu: all].")
@click.option("--steps", type=click.IntRange(min=0), default=20000, help="Reconstruction steps in total.")
@click.option("--stn-steps", type=click.IntRange(min=0), default=3000, help="Aligner steps in total.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Stacks per step (per GPU).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="U-Net learning rate (cosine decay to 10%) [default: preset cpu: 5e-4; gpu: 2e-4].")
@click.option("--width", type=click.IntRange(min=1), default=64,
              help="U-Net base width: widths w-2w-4w-8w-8w (paper: 64).")
@click.option("--window", type=click.IntRange(min=0), default=None,
              help="Frames each side of the centre: F = 2w+1 frames per stack (paper: 2) [default: 2].")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Frames between stack members (paper: 5) [default: preset cpu: 3; gpu: 5].")
@click.option("--residual/--direct", default=True,
              help="U-Net output: a correction added to the centre frame (default), or the image itself (paper).")
@click.option("--arch", type=click.Choice(["unet", "compact"]), default=None,
              help="unet: the paper's STN + 128 px U-Net (GPU); compact: residual net at the mosaic's resolution, "
                   "no STN (trains on CPU; the shipped default) [default: preset cpu: compact; gpu: unet].")
@click.option("--compact-width", type=click.IntRange(min=1), default=48, help="--arch compact: channels at S/2.")
@click.option("--compact-blocks", type=click.IntRange(min=0), default=2,
              help="--arch compact: residual blocks per stage.")
@click.option("--grid-input/--no-grid-input", default=False,
              help="--arch compact: give the network each frame's mosaic grid (block edges, value kind) as maps.")
@click.option("--align/--no-align", default=False,
              help="--arch compact: warp every neighbour onto the centre frame with a flow net at 32 px first.")
@click.option("--w-align", type=click.FloatRange(min=0), default=0.1,
              help="--align: weight of the aligner's loss on the clean frames.")
@click.option("--w-identity", type=click.FloatRange(min=0), default=0.0,
              help="Weight of the SFace identity loss (needs `pip install depix[train]` for onnx); 0: none.")
@click.option("--identity-samples", type=click.IntRange(min=1), default=4,
              help="Stacks of each batch the identity loss sees (about 90 ms each on one CPU core).")
@click.option("--w-temporal", type=click.FloatRange(min=0), default=0.0,
              help="Weight of the temporal loss mean |(y[t+1] - y[t]) - (g[t+1] - g[t])|: some clip stacks are "
                   "also reconstructed one frame later with the same mosaic draw; 0: none.")
@click.option("--temporal-samples", type=click.IntRange(min=1), default=4,
              help="Clip stacks of each batch the temporal loss sees (each costs one more stack's step).")
@click.option("--cpu-bf16/--no-cpu-bf16", default=False, help="bf16 autocast on CPU (AVX-512 BF16 CPUs).")
@click.option("--stills", type=click.Path(dir_okay=False, exists=True), default=None, metavar="CSV",
              help="faces.csv of still head crops (file, identity, black_border_frac): each becomes a moving "
                   "stack and widens the pool of identities; people of the val split are left out.")
@click.option("--stills-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.5,
              help="Share of each batch made from --stills.")
@click.option("--init", type=click.Path(dir_okay=False, exists=True), default=None, metavar="WEIGHTS",
              help="Start from these weights (same model config) when the run directory holds no checkpoint.")
@click.option("--ckpt-minutes", type=click.FloatRange(min=0), default=5.0,
              help="Also checkpoint every this many minutes of wall time (0: by steps only).")
@click.option("--val-minutes", type=click.FloatRange(min=0), default=0.0,
              help="Also validate every this many minutes, for a learning curve over hours (0: by steps only).")
@click.option("--no-stn", is_flag=True, help="Ablation: stack the frames without alignment.")
@click.option("--no-gan", is_flag=True, help="Ablation: no discriminator / adversarial loss (preset cpu: none).")
@click.option("--perceptual", default=None, metavar="NAME|PATH",
              help="Feature network of the perceptual loss: vgg16-stlpips, mobilenetv2, none, or a weights file "
                   "(.pth, or .safetensors from `python -m depixcli.commands.export_features`) "
                   "[default: preset cpu: none; gpu: vgg16-stlpips].")
@click.option("--vgg19", "vgg19_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="torchvision vgg19-dcbb9e9d.pth: use VGG-19 (the paper's layers) for the perceptual loss.")
@click.option("--init-stn", type=click.Path(exists=True), default=None, metavar="RUN|FILE",
              help="Reuse the trained STN of another run (its directory, checkpoint.pt or model.safetensors) and "
                   "skip the STN stage; the STN settings must match.")
@click.option("--time-limit", type=click.FloatRange(min=0), default=0.0,
              help="Minutes: stop cleanly (checkpoint + model export) before this wall-clock limit; 0 = none.")
@click.option("--schedule-minutes", type=click.FloatRange(min=0), default=0.0,
              help="Spread the cosine learning-rate decay over this many minutes of run time instead of over "
                   "--steps (for time-boxed runs); 0 = by steps.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N (torchrun: one GPU per rank).")
@click.option("--workers", type=click.IntRange(min=0), default=2, help="Threads gathering batches ahead.")
@click.option("--seed", type=int, default=0, help="Random seed (rank r uses seed + r).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the networks.")
@click.option("--val-every", type=click.IntRange(min=1), default=1000, help="Steps between validations.")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=1000, help="Steps between checkpoints.")
@click.option("--log-every", type=click.IntRange(min=1), default=50, help="Steps between log lines.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary.")
def train_command(crop_dir, out_dir, config_file, preset, no_stn, no_gan, vgg19_path, quiet, **flags) -> None:
    """Train on the train split of CROPDIR (from `depix prepare`), validate on its val split.

    Uses the GPU when present (bf16), else the CPU, each with its own --preset. Multi-GPU:
    `torchrun --nproc-per-node N -m depixcli train ...`.

    \b
      depix train crops/ -o runs/a --time-limit 60      # rerun the same command to continue
      depix train crops/ -o runs/cpu --stills faces.csv --schedule-minutes 120   # the shipped model's recipe
      depix train crops/ -o runs/paper --preset gpu      # the paper's networks (GPU)
    """
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = {name for name in flags if ctx.get_parameter_source(name) != ParameterSource.DEFAULT}
    if vgg19_path is not None:
        if "perceptual" in given:
            raise click.UsageError("use either --perceptual or --vgg19")
        flags["perceptual"], given = vgg19_path, given | {"perceptual"}
    with user_errors():
        import time
        from pathlib import Path

        from depixcli.train.config import CHECKPOINT, CONFIG_FILE, TrainConfig, load_config, override
        from depixcli.train.data import load_tracks
        from depixcli.train.loop import train

        started = time.monotonic()
        run_cfg = Path(out_dir) / CONFIG_FILE
        chosen = None  # the preset applied, if any
        if (Path(out_dir) / CHECKPOINT).exists() and run_cfg.exists():
            cfg = load_config(run_cfg)  # resuming: the run's own config, then explicit flags
        else:
            cfg = load_config(config_file) if config_file is not None else TrainConfig()
            if config_file is None or ctx.get_parameter_source("preset") != ParameterSource.DEFAULT:
                chosen = preset if preset != "auto" else auto_preset(flags["device"], flags["arch"])
                cfg = override(cfg, **PRESETS[chosen])
                if chosen == "cpu" and "cpu_bf16" not in given:
                    import torch

                    cfg = override(cfg, cpu_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
        changes = {OVERRIDES[k]: flags[k] for k in given}
        if no_stn or changes.get("model_arch", cfg.model.arch) == "compact":
            changes["model_use_stn"] = False
        if no_gan:
            changes["gan"] = False
        cfg = override(cfg, **changes)
        if cfg.steps == 0 and cfg.stage != "stn":
            raise click.BadParameter("0 reconstruction steps would export no model: give N >= 1 (or --stage stn "
                                     "to train only the aligner)", param_hint="--steps")
        if chosen is not None and not quiet:
            why = "" if preset != "auto" else f" (auto: --arch {flags['arch']})" if flags["arch"] else \
                " (auto: no CUDA GPU)" if chosen == "cpu" else " (auto: CUDA GPU)"
            click.echo(f"preset {chosen}{why}: {PRESET_TEXT[chosen]}; flags given override it", err=True)
        train_tracks, val_tracks = load_tracks(crop_dir, "train"), load_tracks(crop_dir, "val")
        stills = None
        if cfg.stills:
            from depixcli.train.stills import load_stills

            stills = load_stills(cfg.stills, exclude=sorted({t.identity for t in val_tracks}))
        result = train(cfg, out_dir, train_tracks, val_tracks, quiet=quiet, started=started, stills=stills)
    if not quiet and result.rank == 0:
        state = ("interrupted: checkpoint saved (rerun the same command to continue)" if result.interrupted
                 else "stopped at the time limit (rerun to continue)" if not result.finished
                 else "done" if result.model_path is not None or cfg.stage == "stn"
                 else "finished without a model export")
        click.echo(f"{state}: stn step {result.stn_step}, recon step {result.step}; log {result.log_path}", err=True)
        summary = format_validation(result.last)
        if summary:
            click.echo(summary, err=True)
        if result.model_path is not None:
            click.echo(f"model: {result.model_path}", err=True)
    if result.interrupted:
        raise interrupted_exit(result.signal or None)  # 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP)


def auto_preset(device: str, arch: str | None = None) -> str:
    """--preset auto: the preset of the --arch given, else "gpu" when the run will be on CUDA, else "cpu"."""
    if arch is not None:
        return "gpu" if arch == "unet" else "cpu"
    if device.startswith("cuda"):
        return "gpu"
    if device == "cpu":
        return "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def format_validation(last: dict) -> str:
    """The last validation of a run as one line: PSNR of the model vs bicubic per protocol, in dB."""
    models = {k[len("val_psnr_"):-len("_model")]: v for k, v in last.items()
              if k.startswith("val_psnr_") and k.endswith("_model")}
    parts = [f"{name} {v:.2f}/{last.get(f'val_psnr_{name}_bicubic', float('nan')):.2f}" for name, v in models.items()]
    if "val_gain_mean" in last:
        parts.append(f"mean gain {last['val_gain_mean']:+.2f} dB")
    stn = [f"{k[len('val_stn_'):]} {v:.4f}" for k, v in last.items() if k.startswith("val_stn_")]
    if not parts and not stn:
        return ""
    head = f"validation at step {last.get('step', '?')}, PSNR dB model/bicubic: " if parts else "validation: "
    return head + ", ".join(parts + stn)
