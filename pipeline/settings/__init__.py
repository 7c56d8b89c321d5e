"""A run's settings, typed: one frozen dataclass per concern (`concerns`), each mode's settings
composed of them (`pipeline/modes/*.py`), declared with `setting` (`declare`) and built once from
the composed config (`from_config`) before any work, or directly from keyword arguments."""

from pipeline.settings.concerns import (
    CostSettings,
    DataSettings,
    ExecutionSettings,
    HeadTicketSettings,
    ImportanceSettings,
    ModelSettings,
    PathSettings,
    RecipeSettings,
    RunSettings,
    SearchSettings,
    SelectionSettings,
    TicketRunSettings,
    TicketSettings,
)
from pipeline.settings.declare import ALWAYS, IF_CHANGED, NEVER, Concern, describe, protocol_values, setting, tags

__all__ = [
    "ALWAYS", "IF_CHANGED", "NEVER", "Concern", "CostSettings", "DataSettings", "ExecutionSettings", "HeadTicketSettings",
    "ImportanceSettings", "ModelSettings", "PathSettings", "RecipeSettings", "RunSettings", "SearchSettings",
    "SelectionSettings", "TicketRunSettings", "TicketSettings", "describe", "protocol_values", "setting", "tags",
]
