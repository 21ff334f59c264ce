"""Metric loggers behind one small interface: JSONL always, TensorBoard or MLflow optionally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from recbias.errors import ConfigError


class MetricLogger(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class JsonlLogger:
    """Appends one JSON object per line and flushes, so a killed run keeps its log."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class TensorBoardLogger:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "train.loggers: 'tensorboard' needs `pip install tensorboard`"
            ) from None
        self._w = SummaryWriter(str(log_dir))

    def log(self, record: dict[str, Any]) -> None:
        step = int(record.get("step", 0))
        for key, value in record.items():
            if isinstance(value, int | float) and key != "step":
                self._w.add_scalar(f"{record.get('event', 'train')}/{key}", value, step)

    def close(self) -> None:
        self._w.close()


class MlflowLogger:
    def __init__(self, run_name: str) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError("train.loggers: 'mlflow' needs `pip install mlflow`") from None
        self._mlflow = mlflow
        mlflow.start_run(run_name=run_name)

    def log(self, record: dict[str, Any]) -> None:
        nums = {
            k: float(v) for k, v in record.items() if isinstance(v, int | float) and k != "step"
        }
        self._mlflow.log_metrics(nums, step=int(record.get("step", 0)))

    def close(self) -> None:
        self._mlflow.end_run()


class MultiLogger:
    def __init__(self, loggers: list[MetricLogger]) -> None:
        self.loggers = loggers

    def log(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def build_loggers(names: list[str], run_dir: Path, run_name: str) -> MultiLogger:
    loggers: list[MetricLogger] = [JsonlLogger(run_dir / "train_log.jsonl")]
    for name in names:
        if name == "tensorboard":
            loggers.append(TensorBoardLogger(run_dir / "tensorboard"))
        elif name == "mlflow":
            loggers.append(MlflowLogger(run_name))
        elif name != "jsonl":
            raise ConfigError(
                f"train.loggers: unknown logger '{name}' (jsonl, tensorboard, mlflow)"
            )
    return MultiLogger(loggers)
