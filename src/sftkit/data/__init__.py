"""The data engine: read any SFT data shape, convert it to canonical records, check, measure, mix.

Flow: readers (line-numbered items) -> formats (one pure converter per source format) -> validate
(conversation rules, media paths) -> pipeline (accounting, rejects, dedup) -> quality / mix.
"""

from sftkit.data.pipeline import ConvertOptions, Report, check_files, convert_files, iter_converted

__all__ = ["ConvertOptions", "Report", "check_files", "convert_files", "iter_converted"]
