"""Data layer: read recommendation sources, prepare windowed samples, load prepared datasets.

from recbias.data import DataConfig, PreparedDataset, prepare_dataset
data = PreparedDataset.load(prepare_dataset(DataConfig()))   # embedded ML-100K
data.titles[data.split("train").target[0]]
"""

from recbias.data.config import DataConfig, PrepareConfig, SourceConfig, resolve_data_config
from recbias.data.dataset import Domain, PreparedDataset
from recbias.data.embedded import ensure_ml100k, ml100k_status
from recbias.data.prepare import prepare_dataset
from recbias.data.raw import RawData
from recbias.data.sources import locate_inputs, read_source, register_source

__all__ = [
    "DataConfig",
    "Domain",
    "PrepareConfig",
    "PreparedDataset",
    "RawData",
    "SourceConfig",
    "ensure_ml100k",
    "locate_inputs",
    "ml100k_status",
    "prepare_dataset",
    "read_source",
    "register_source",
    "resolve_data_config",
]
