"""The training loop: dataset spec -> Dataset -> timm transform -> model -> accelerate loop -> run folder.

``train`` reads as five named steps, like accelerate's ``complete_cv_example``: check every input, prepare the
Accelerator, data, model, optimizer and scheduler together, resume, train (with periodic evaluation and
checkpoints), export. The training loss stays on the device between evaluations: no host sync per batch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration, PartialState
from accelerate.state import AcceleratorState, is_initialized
from accelerate.utils import GradientAccumulationPlugin, is_tensorboard_available
from datasets import Dataset
from timm.optim import create_optimizer_v2
from tqdm.auto import tqdm

from ..data import (
    InputPipeline,
    LabelError,
    LabelInfo,
    ModelInputs,
    PipelineChoice,
    build_pipeline,
    check_labels,
    choose_pipeline,
    data_config_for,
    label_info,
    load_dataset_spec,
)
from ..files import default_file_mode
from ..run_folder import (
    METRICS,
    PREDICTIONS,
    SUMMARY,
    TIMING_FIELDS,
    TRAIN_ARGS,
    write_json_atomic,
    write_jsonl_atomic,
)
from .config import TrainConfig, TrainConfigError
from .convergence import TrainHistory, best_auc, evaluation_steps, steps_to_threshold
from .evaluation import evaluate_model, task_loss
from .faults import CompileError, NoIntactCheckpointError, is_compile_failure
from .model import check_image_size, create_model
from .run_folder import (
    all_checkpoints,
    check_output_folder,
    checkpoint_dir,
    clear_run_folder,
    export_model,
    prune_checkpoints,
    remove_stale_temporaries,
    temporary_twin,
    write_eval_predictions,
)
from .validation import create_step_scheduler


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


@dataclass
class _Inputs:
    """Everything step 1 checked: the splits, their labels, the image size, the input pipeline and the
    initialized model."""

    train_ds: Dataset
    eval_ds: Dataset
    labels: LabelInfo
    img_size: int
    model: torch.nn.Module | None  # None only when check_run was asked not to build it
    start_over: bool
    pipeline: PipelineChoice
    held: str = "empty"  # what the output folder held: "empty", "same" (this run) or "different"
    select_ds: Dataset | None = None  # evaluated once at the end (experiments choose the lr on it)

    def pipeline_for(
        self, dataset: Dataset, config: TrainConfig, data_config: dict, *, training: bool
    ) -> InputPipeline:
        """The chosen input pipeline for one split, augmented (``--no-augment`` aside) when ``training``."""
        return build_pipeline(
            dataset,
            data_config,
            pipeline=self.pipeline.name,
            training=training,
            augment=config.augment,
            seed=config.seed,
            channels_last=config.channels_last,
            progress=config.progress,
        )


@dataclass
class _Throughput:
    """Training images per second between evaluations, leaving out the time spent evaluating and checkpointing
    (each pause follows a host sync, so queued device work is counted)."""

    images: int = 0
    seconds: float = 0.0
    since: float = field(default_factory=time.perf_counter)

    def pause(self) -> None:
        self.seconds += time.perf_counter() - self.since

    def restart(self) -> None:
        self.since = time.perf_counter()

    def take(self) -> float | None:
        """The rate since the last ``take`` (None before any training step), and a fresh count."""
        rate = self.images / self.seconds if self.images and self.seconds > 0 else None
        self.images, self.seconds = 0, 0.0
        return rate


@dataclass
class _Session:
    """The prepared objects of one training (step 2) plus its progress counters."""

    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    train_set: torch.utils.data.Dataset  # has set_epoch: augmentation is seeded per (seed, epoch, image)
    train_loader: torch.utils.data.DataLoader
    eval_loader: torch.utils.data.DataLoader
    data_config: dict
    train_inputs: ModelInputs
    eval_inputs: ModelInputs
    history: TrainHistory = field(default_factory=TrainHistory)
    step: int = 0
    micro_batch: int = 0
    start_time: float = 0.0
    # Training loss summed since the last evaluation, on the device (float64: the same sums as Python floats).
    running_loss: torch.Tensor | None = None
    running_count: int = 0
    throughput: _Throughput = field(default_factory=_Throughput)


def check_run(config: TrainConfig, *, build_model: bool = True) -> None:
    """Step 1 alone: everything ``train`` checks before it writes (a grid checks all its cells up front).

    ``build_model=False`` skips building the initialized model (another cell with the same model, init and
    source already did).
    """
    _check_inputs(config, PartialState(cpu=_multi_cpu()), build_model=build_model)


def _check_inputs(config: TrainConfig, state: PartialState, *, build_model: bool = True) -> _Inputs | dict:
    """Step 1: validate the config, data, labels, output folder and image size; the summary if already done."""
    config.validate()
    folder, where = Path(config.output), f"{config.dataset} [{{}}]"
    kwargs = {"image_column": config.image_column, "label_column": config.label_column}
    train_ds = load_dataset_spec(config.dataset, config.train_split, **kwargs)
    eval_ds = load_dataset_spec(config.dataset, config.eval_split, **kwargs)
    labels = label_info(train_ds, config.num_classes)
    check_labels(train_ds, labels, where.format(config.train_split))
    check_labels(eval_ds, labels, where.format(config.eval_split))
    select_ds = None
    if config.select_split is not None:
        select_ds = load_dataset_spec(config.dataset, config.select_split, **kwargs)
        check_labels(select_ds, labels, where.format(config.select_split))
    if len(train_ds) < config.batch_size * state.num_processes:
        raise LabelError(
            f"{where.format(config.train_split)} has {len(train_ds)} images, fewer than one batch "
            f"({config.batch_size} x {state.num_processes} processes); lower --batch-size"
        )
    holds = check_output_folder(folder, config.to_json(), resume=config.resume, overwrite=config.overwrite)
    if holds == "same" and config.resume and (folder / SUMMARY).is_file():
        return json.loads((folder / SUMMARY).read_text())
    img_size = config.img_size or max(train_ds[0]["image"].size)
    splits = {"train": train_ds, "eval": eval_ds, **({"select": select_ds} if select_ds is not None else {})}
    pipeline = choose_pipeline(config.pipeline, splits)
    model = create_model(config, labels.num_classes) if build_model else None
    if model is not None:
        check_image_size(model, img_size)
    start_over = holds == "different" or (holds == "same" and not config.resume)
    return _Inputs(train_ds, eval_ds, labels, img_size, model, start_over, pipeline, holds, select_ds)


def _claim_folder(config: TrainConfig, inputs: _Inputs, state: PartialState) -> None:
    """Every process has checked the folder before the main one clears it and writes train_args.json."""
    folder = Path(config.output)
    state.wait_for_everyone()
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        if inputs.start_over:
            clear_run_folder(folder)
        remove_stale_temporaries(folder)
        write_json_atomic(folder / TRAIN_ARGS, config.to_json())
    state.wait_for_everyone()


def _eval_loader(pipeline: InputPipeline, config: TrainConfig) -> torch.utils.data.DataLoader:
    """Every image of an evaluated split once, in order."""
    return pipeline.loader(
        batch_size=config.eval_batch_size or config.batch_size,
        shuffle=False,
        drop_last=False,
        workers=config.workers,
    )


def _prepare(config: TrainConfig, inputs: _Inputs) -> _Session:
    """Step 2: Accelerator, data, optimizer and scheduler, prepared together."""
    accelerator = Accelerator(
        cpu=_multi_cpu(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False
        ),
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=config.seed, non_blocking=torch.cuda.is_available()
        ),
        log_with=_trackers(config),
        project_dir=config.output,
    )
    accelerator.print(f"input pipeline: {inputs.pipeline.name} ({inputs.pipeline.reason})")
    data_config = data_config_for(inputs.model, inputs.img_size)
    train = inputs.pipeline_for(inputs.train_ds, config, data_config, training=True)
    evaluation = inputs.pipeline_for(inputs.eval_ds, config, data_config, training=False)
    train_loader = train.loader(
        batch_size=config.batch_size, shuffle=True, drop_last=True, workers=config.workers
    )
    eval_loader = _eval_loader(evaluation, config)
    model = inputs.model
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = create_step_scheduler(optimizer, config)
    if config.compile:  # in place: the state dict keeps its keys, so checkpoints resume with or without it
        model.compile()
    model, optimizer, train_loader, eval_loader = accelerator.prepare(
        model, optimizer, train_loader, eval_loader
    )
    session = _Session(
        accelerator,
        model,
        optimizer,
        scheduler,
        train.dataset,
        train_loader,
        eval_loader,
        data_config,
        train.to_model,
        evaluation.to_model,
    )
    accelerator.register_for_checkpointing(session.history, *([scheduler] if scheduler is not None else []))
    return session


def _load_newest_intact(accelerator: Accelerator, folder: Path) -> Path | None:
    """``load_state`` from the newest checkpoint that loads; a corrupt one is reported and skipped.

    Every registered object (model, optimizer, scheduler, history, RNG) is restored by each ``load_state``, so a
    checkpoint that fails half-way is fully overwritten by the older one loaded next.
    """
    checkpoints, failures = all_checkpoints(folder), []
    for checkpoint in reversed(checkpoints):
        try:
            accelerator.load_state(str(checkpoint))
        except Exception as error:  # truncated or missing files: safetensors, pickle and OS errors alike
            failures.append(f"{checkpoint.name} ({type(error).__name__}: {error})")
            accelerator.print(
                f"warning: checkpoint {checkpoint} cannot be loaded ({type(error).__name__}: {error}); "
                "trying the next older one"
            )
            continue
        return checkpoint
    if failures:
        raise NoIntactCheckpointError(
            f"--resume: no checkpoint in {folder / 'checkpoints'} can be loaded ({'; '.join(failures)}); "
            "pass --overwrite to start the run over"
        )
    return None


def _resume(config: TrainConfig, session: _Session, inputs: _Inputs) -> None:
    """Step 3: restore model, optimizer, RNG, scheduler and history from the newest intact checkpoint, if any.

    With ``--resume`` it always says what it did: resumed (and from which step), or why it starts at step 0.
    """
    folder, accelerator, history = Path(config.output), session.accelerator, session.history
    if config.resume and inputs.start_over:
        accelerator.print(
            f"--resume: {folder} held a different run, replaced (--overwrite); starting at step 0"
        )
    elif config.resume:
        checkpoint = _load_newest_intact(accelerator, folder)
        if checkpoint is not None:
            accelerator.print(f"resumed {folder} from {checkpoint.name} (step {history.step})")
        elif inputs.held == "same":
            hint = "" if config.checkpoint_every else " (--checkpoint-every 0 saves none)"
            accelerator.print(f"--resume: {folder} has no checkpoint{hint}; starting this run over at step 0")
        else:
            accelerator.print(f"--resume: nothing to resume in {folder}; starting a new run")
    if accelerator.trackers == [] and _trackers(config):
        accelerator.init_trackers("logs", config=_tracker_config(config))
    session.step, session.micro_batch = history.step, history.step * config.grad_accum
    session.start_time = time.perf_counter() - history.elapsed_s
    dtype = torch.float32 if accelerator.device.type == "mps" else torch.float64
    session.running_loss = torch.tensor(history.running_loss, dtype=dtype, device=accelerator.device)
    session.running_count = history.running_count


def _evaluate_and_record(config: TrainConfig, session: _Session, labels: LabelInfo) -> dict:
    """Evaluate, append the record to the history and metrics.jsonl, log it; returns the predictions."""
    accelerator = session.accelerator
    train_loss = session.running_loss.item() / session.running_count if session.running_count else None
    session.throughput.pause()
    metrics, predictions = evaluate_model(
        accelerator, session.model, session.eval_loader, session.eval_inputs, labels
    )
    record = {
        "step": session.step,
        "epoch": session.micro_batch / len(session.train_loader),
        "train_loss": train_loss,
        "train_images_per_s": session.throughput.take(),
        "lr": session.optimizer.param_groups[0]["lr"],
        "elapsed_s": time.perf_counter() - session.start_time,
        **metrics,
    }
    session.history.records.append(record)
    accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=session.step)
    if accelerator.is_main_process:
        if config.save_predictions:  # every evaluation's per-image scores: the report bootstraps over them
            write_eval_predictions(Path(config.output), session.step, predictions)
        write_jsonl_atomic(Path(config.output) / METRICS, session.history.records)
    session.throughput.restart()
    return predictions


def _evaluate_selection(config: TrainConfig, session: _Session, inputs: _Inputs) -> dict | None:
    """The selection split (e.g. val) once, at the end: an experiment chooses each init's lr on it."""
    if inputs.select_ds is None:
        return None
    selection = inputs.pipeline_for(inputs.select_ds, config, session.data_config, training=False)
    loader = _eval_loader(selection, config)
    accelerator = session.accelerator
    metrics, _ = evaluate_model(
        accelerator, session.model, accelerator.prepare(loader), selection.to_model, inputs.labels
    )
    return {"split": config.select_split, **metrics}


def _sync_history(session: _Session) -> None:
    """Copy the progress counters into the checkpointed history (one host sync, at checkpoint/export time)."""
    history = session.history
    history.step, history.elapsed_s = session.step, time.perf_counter() - session.start_time
    history.running_loss, history.running_count = session.running_loss.item(), session.running_count


@contextmanager
def _contiguous_weights(session: _Session, config: TrainConfig) -> Iterator[None]:
    """Weights in the standard layout while they are saved: safetensors refuses channels-last tensors."""
    if not config.channels_last:
        yield
        return
    model = session.accelerator.unwrap_model(session.model)
    model.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        model.to(memory_format=torch.channels_last)


def _save_checkpoint(config: TrainConfig, session: _Session) -> None:
    """``save_state`` into a temporary folder, renamed into place only once every process has written."""
    accelerator, folder = session.accelerator, Path(config.output)
    _sync_history(session)
    session.throughput.pause()
    final = checkpoint_dir(folder, session.step)
    staging = temporary_twin(final)
    with _contiguous_weights(session, config):
        accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for written in staging.iterdir():  # safetensors writes its files 0600; everything else is 0644
            if written.is_file():
                os.chmod(written, default_file_mode())
        if final.exists():  # a corrupt checkpoint of this step that resuming skipped: replaced, never mixed
            shutil.rmtree(final)
        staging.rename(final)
        prune_checkpoints(folder, config.keep_checkpoints)
    accelerator.wait_for_everyone()
    session.throughput.restart()


def _optimizer_step(config: TrainConfig, session: _Session, batch: dict, labels: LabelInfo) -> bool:
    """One micro-batch forward/backward (and the optimizer step when it completes an accumulation).

    Returns whether gradients were synchronised, i.e. whether this micro-batch ended an optimizer step.
    """
    accelerator, model, optimizer = session.accelerator, session.model, session.optimizer
    with accelerator.accumulate(model):
        logits = model(session.train_inputs(batch))
        loss = task_loss(logits, batch["label"], labels.multilabel)
        accelerator.backward(loss)
        if accelerator.sync_gradients and config.clip_grad:
            accelerator.clip_grad_norm_(model.parameters(), config.clip_grad)
        optimizer.step()
        optimizer.zero_grad()
    session.micro_batch += 1
    session.throughput.images += len(batch["label"]) * accelerator.num_processes
    session.running_loss += loss.detach().to(session.running_loss.dtype)
    session.running_count += 1
    return accelerator.sync_gradients


def _train_steps(config: TrainConfig, session: _Session, labels: LabelInfo) -> dict:
    """Step 4: optimizer steps up to ``max_steps``, evaluating and checkpointing on schedule; the last predictions."""
    accelerator, history = session.accelerator, session.history
    batches_per_epoch, last_eval_step, predictions = len(session.train_loader), None, None
    schedule = set(
        evaluation_steps(config.max_steps, every=config.eval_every, log_start=config.eval_log_start)
    )
    progress = tqdm(
        total=config.max_steps,
        initial=session.step,
        disable=not (accelerator.is_local_main_process and config.progress),
    )
    if session.scheduler is not None:
        session.scheduler.step_update(session.step)
    session.model.train()
    session.throughput.restart()
    while session.step < config.max_steps:
        epoch, offset = divmod(session.micro_batch, batches_per_epoch)
        session.train_set.set_epoch(epoch)
        session.train_loader.set_epoch(epoch)
        loader = session.train_loader
        batches = accelerator.skip_first_batches(loader, offset) if offset else loader
        for batch in batches:
            if not _optimizer_step(config, session, batch, labels):
                continue
            session.step += 1
            step = session.step
            progress.update(1)
            if session.scheduler is not None:
                session.scheduler.step_update(step)
            if step in schedule:
                predictions, last_eval_step = _evaluate_and_record(config, session, labels), step
                progress.set_postfix(auc=f"{history.records[-1]['auc']:.3f}")
                session.running_loss.zero_()
                session.running_count = 0
            if config.checkpoint_every and (step % config.checkpoint_every == 0 or step == config.max_steps):
                _save_checkpoint(config, session)
            if step >= config.max_steps:
                break
    progress.close()
    if last_eval_step == session.step:
        return predictions
    if history.records and history.records[-1]["step"] == session.step:  # resumed from the final checkpoint
        return evaluate_model(accelerator, session.model, session.eval_loader, session.eval_inputs, labels)[1]
    return _evaluate_and_record(config, session, labels)


def _summary(config: TrainConfig, session: _Session, inputs: _Inputs, select: dict | None) -> dict:
    """The run's summary.json: what was trained, on what, and how it ended."""
    history, labels = session.history, inputs.labels
    final = history.records[-1]
    return {
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
        "img_size": inputs.img_size,
        "pipeline": inputs.pipeline.name,
        "steps": session.step,
        "num_processes": session.accelerator.num_processes,
        "train_samples": len(inputs.train_ds),
        "eval_samples": len(inputs.eval_ds),
        "final": {k: v for k, v in final.items() if k not in ("step", "epoch", "lr", *TIMING_FIELDS)},
        "best_auc": best_auc(history.records),
        "select": select,
        "steps_to_threshold": steps_to_threshold(history.records, config.auc_thresholds),
        "wall_time_s": history.elapsed_s,
    }


def _export(config: TrainConfig, session: _Session, inputs: _Inputs, predictions: dict) -> dict:
    """Step 5: weights + config (timm-loadable), predictions, then summary.json last (marks the run complete)."""
    accelerator, folder = session.accelerator, Path(config.output)
    select = _evaluate_selection(config, session, inputs)
    _sync_history(session)
    accelerator.wait_for_everyone()
    summary = _summary(config, session, inputs, select)
    if accelerator.is_main_process:
        with _contiguous_weights(session, config):
            export_model(
                accelerator.unwrap_model(session.model),
                folder,
                data_config=session.data_config,
                label_names=inputs.labels.names,
            )
        if config.save_predictions:
            staging = temporary_twin(folder / PREDICTIONS)
            with staging.open("wb") as handle:
                np.savez(handle, **predictions)
            staging.replace(folder / PREDICTIONS)
        write_json_atomic(folder / SUMMARY, summary)
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # not end_training(): the process group may serve further runs
        tracker.finish()
    final_auc = session.history.records[-1]["auc"]
    accelerator.print(f"run complete: {folder} (final AUC {final_auc:.4f} at step {session.step})")
    return summary


def _check_process_reusable(config: TrainConfig) -> None:
    """accelerate fixes the precision once per process (its AcceleratorState); a later run in the same process
    may only use the same one. Grids run each cell in its own process (``transfusion experiment run``)."""
    if is_initialized() and AcceleratorState().mixed_precision != config.mixed_precision:
        raise TrainConfigError(
            f"--mixed-precision {config.mixed_precision!r}: this process already trained with "
            f"{AcceleratorState().mixed_precision!r}, and accelerate sets the precision once per process; "
            "run each training in its own process (`transfusion train`, or `transfusion experiment run` "
            "for a grid)"
        )


def train(config: TrainConfig) -> dict:
    """Fine-tune ``config.model`` on ``config.dataset``; returns the run's summary (also in summary.json).

    Meant to run once per process (each grid cell is its own process); a later call in the same process
    works when it keeps the precision, and is refused with a clear error when it does not.
    """
    config.validate()  # a bad option is named first, before what this process already ran
    _check_process_reusable(config)
    state = PartialState(cpu=_multi_cpu())
    inputs = _check_inputs(config, state)
    if isinstance(inputs, dict):  # this run already finished: its summary
        if config.resume:
            state.print(
                f"--resume: {config.output} is already complete (step {inputs.get('steps')}); nothing to do"
            )
        return inputs
    _claim_folder(config, inputs, state)
    session = _prepare(config, inputs)
    _resume(config, session, inputs)
    try:
        predictions = _train_steps(config, session, inputs.labels)
    except KeyboardInterrupt as interrupt:  # Python's own interrupt, now saying where and how to go on
        interrupt.args = (_interrupted_message(config, session.step),)
        raise
    except Exception as error:
        if config.compile and is_compile_failure(error):
            raise CompileError(
                f"--compile: training {config.model} failed inside torch.compile ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); if it trains without --compile, "
                "torch.compile cannot take this model here"
            ) from error
        raise
    return _export(config, session, inputs, predictions)


def _interrupted_message(config: TrainConfig, step: int) -> str:
    checkpoints = all_checkpoints(Path(config.output))
    if checkpoints:
        again = f"rerun the same command with --resume to continue from {checkpoints[-1].name}"
    else:
        again = "no checkpoint was saved (--checkpoint-every), so --resume starts over"
    return f"interrupted at step {step}; {again}"
