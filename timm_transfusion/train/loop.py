"""The training loop: dataset spec -> Dataset -> timm transform -> model -> accelerate loop -> run folder.

One linear story, like accelerate's ``complete_cv_example``: check every input, make the Accelerator, data, model,
optimizer and scheduler, ``prepare`` them once, (resume,) train with periodic evaluation and checkpoints, export.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import GradientAccumulationPlugin, is_tensorboard_available
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from tqdm.auto import tqdm

from ..data import (
    LabelError,
    TransformedDataset,
    build_transform,
    check_labels,
    data_config_for,
    label_info,
    load_dataset_spec,
    normalize_on_device,
)
from .config import TrainConfig
from .convergence import TrainHistory, steps_to_threshold
from .evaluation import evaluate_model, task_loss
from .model import check_image_size, create_model
from .run_folder import (
    check_output_folder,
    checkpoint_dir,
    clear_run_folder,
    export_model,
    latest_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    temporary_twin,
    write_json_atomic,
    write_jsonl_atomic,
)


def _multi_cpu() -> bool:
    """torchrun / accelerate launch with several processes and no GPU: accelerate needs ``cpu=True`` for gloo."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _trackers(config: TrainConfig) -> str | None:
    if config.log_with == "auto":
        return "tensorboard" if is_tensorboard_available() else None
    if config.log_with in ("none", ""):
        return None
    return config.log_with


def _tracker_config(config: TrainConfig) -> dict:
    """Trackers take scalars only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_json().items()}


def _save_checkpoint(accelerator: Accelerator, folder: Path, step: int, keep: int) -> None:
    """``save_state`` into a temporary folder, renamed into place only once every process has written."""
    final = checkpoint_dir(folder, step)
    staging = temporary_twin(final)
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        staging.rename(final)
        prune_checkpoints(folder, keep)
    accelerator.wait_for_everyone()


def train(config: TrainConfig) -> dict:
    """Fine-tune ``config.model`` on ``config.dataset``; returns the run's summary (also in summary.json)."""
    state = PartialState(cpu=_multi_cpu())
    folder = Path(config.output)
    where = f"{config.dataset} [{{}}]"

    # 1. Check every input before any training starts.
    config.validate()
    kwargs = {"image_column": config.image_column, "label_column": config.label_column}
    train_ds = load_dataset_spec(config.dataset, config.train_split, **kwargs)
    eval_ds = load_dataset_spec(config.dataset, config.eval_split, **kwargs)
    labels = label_info(train_ds, config.num_classes)
    check_labels(train_ds, labels, where.format(config.train_split))
    check_labels(eval_ds, labels, where.format(config.eval_split))
    if len(train_ds) < config.batch_size * state.num_processes:
        raise LabelError(
            f"{where.format(config.train_split)} has {len(train_ds)} images, fewer than one batch "
            f"({config.batch_size} x {state.num_processes} processes); lower --batch-size"
        )
    holds = check_output_folder(folder, config.to_json(), resume=config.resume, overwrite=config.overwrite)
    start_over = holds == "different" or (holds == "same" and not config.resume)
    if holds == "same" and config.resume and (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    img_size = config.img_size or max(train_ds[0]["image"].size)
    model = create_model(config, labels.num_classes)
    check_image_size(model, img_size)
    state.wait_for_everyone()  # every process has checked the folder before the main one writes to it
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if start_over:
            clear_run_folder(folder)
        remove_stale_temporaries(folder)
        write_json_atomic(folder / "train_args.json", config.to_json())
    state.wait_for_everyone()

    # 2. Accelerator, data, optimizer and scheduler, prepared together. One process may run several trainings
    # (an experiment grid), each with its own precision; the process group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        cpu=_multi_cpu(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
        log_with=_trackers(config),
        project_dir=str(folder),
    )
    data_config = data_config_for(model, img_size)
    train_set = TransformedDataset(
        train_ds, build_transform(data_config, training=True, augment=config.augment), seed=config.seed
    )
    eval_set = TransformedDataset(eval_ds, build_transform(data_config, training=False), seed=config.seed)
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, drop_last=True, num_workers=config.workers
    )
    eval_loader = torch.utils.data.DataLoader(
        eval_set, batch_size=config.eval_batch_size or config.batch_size, num_workers=config.workers
    )
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=config.sched,
        num_epochs=max(config.max_steps, 1),
        warmup_epochs=config.warmup_steps,
        min_lr=config.min_lr,
        step_on_epochs=False,
        updates_per_epoch=1,
    )
    model, optimizer, train_loader, eval_loader = accelerator.prepare(
        model, optimizer, train_loader, eval_loader
    )
    history = TrainHistory()
    accelerator.register_for_checkpointing(history, *([scheduler] if scheduler is not None else []))

    # 3. Resume: restore model, optimizer, RNG, scheduler and history; skip the batches already seen.
    checkpoint = latest_checkpoint(folder) if config.resume and not start_over else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        accelerator.print(f"resumed {folder} from {checkpoint.name} (step {history.step})")
    if accelerator.trackers == [] and _trackers(config):
        accelerator.init_trackers("logs", config=_tracker_config(config))

    # 4. Train.
    batches_per_epoch = len(train_loader)
    step, start_time = history.step, time.perf_counter() - history.elapsed_s
    micro_batch, last_eval_step = step * config.grad_accum, None
    running_loss, running_count = history.running_loss, history.running_count
    progress = tqdm(
        total=config.max_steps,
        initial=step,
        disable=not (accelerator.is_local_main_process and config.progress),
    )
    if scheduler is not None:
        scheduler.step_update(step)
    model.train()

    def evaluate_and_record() -> dict:
        metrics, predictions = evaluate_model(accelerator, model, eval_loader, data_config, labels)
        record = {
            "step": step,
            "epoch": micro_batch / batches_per_epoch,
            "train_loss": running_loss / running_count if running_count else None,
            "lr": optimizer.param_groups[0]["lr"],
            "elapsed_s": time.perf_counter() - start_time,
            **metrics,
        }
        history.records.append(record)
        accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
        if accelerator.is_main_process:
            write_jsonl_atomic(folder / "metrics.jsonl", history.records)
        return predictions

    predictions = None
    while step < config.max_steps:
        epoch, offset = divmod(micro_batch, batches_per_epoch)
        train_set.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(train_loader, offset) if offset else train_loader
        for batch in batches:
            with accelerator.accumulate(model):
                logits = model(normalize_on_device(batch["pixel_values"], data_config))
                loss = task_loss(logits, batch["label"], labels.multilabel)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.clip_grad:
                    accelerator.clip_grad_norm_(model.parameters(), config.clip_grad)
                optimizer.step()
                optimizer.zero_grad()
            micro_batch += 1
            running_loss, running_count = running_loss + loss.item(), running_count + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress.update(1)
            if scheduler is not None:
                scheduler.step_update(step)
            if step % config.eval_every == 0 or step == config.max_steps:
                predictions, last_eval_step = evaluate_and_record(), step
                progress.set_postfix(auc=f"{history.records[-1]['auc']:.3f}")
                running_loss, running_count = 0.0, 0
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.max_steps:
                history.step, history.elapsed_s = step, time.perf_counter() - start_time
                history.running_loss, history.running_count = running_loss, running_count
                _save_checkpoint(accelerator, folder, step, config.keep_checkpoints)
            if step >= config.max_steps:
                break
    progress.close()
    if last_eval_step != step:
        predictions = evaluate_and_record()

    # 5. Export: weights + config (timm-loadable), predictions, then summary.json last (marks the run complete).
    history.step, history.elapsed_s = step, time.perf_counter() - start_time
    accelerator.wait_for_everyone()
    final = history.records[-1]
    summary = {
        "model": config.model,
        "init": config.init,
        "init_source": config.init_source,
        "init_seed": config.init_seed if config.init_seed is not None else config.seed,
        "dataset": config.dataset,
        "split": config.eval_split,
        "seed": config.seed,
        "num_classes": labels.num_classes,
        "multilabel": labels.multilabel,
        "label_names": labels.names,
        "img_size": img_size,
        "steps": step,
        "num_processes": accelerator.num_processes,
        "train_samples": len(train_ds),
        "eval_samples": len(eval_ds),
        "final": {k: v for k, v in final.items() if k not in ("step", "epoch", "elapsed_s", "lr")},
        "best_auc": max(r["auc"] for r in history.records),
        "steps_to_threshold": steps_to_threshold(history.records, config.auc_thresholds),
        "wall_time_s": history.elapsed_s,
    }
    if accelerator.is_main_process:
        export_model(
            accelerator.unwrap_model(model), folder, data_config=data_config, label_names=labels.names
        )
        if config.save_predictions:
            staging = temporary_twin(folder / "eval_predictions.npz")
            with staging.open("wb") as handle:
                np.savez(handle, **predictions)
            staging.replace(folder / "eval_predictions.npz")
        write_json_atomic(folder / "summary.json", summary)
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): the process group may serve further runs
        tracker.finish()
    accelerator.print(f"run complete: {folder} (final AUC {final['auc']:.4f} at step {step})")
    return summary
