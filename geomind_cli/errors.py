"""One exception hierarchy for the library.

Every error a user can cause derives from :class:`GeomindError`; the CLI turns it into one line on stderr and exit
code 1. Messages are complete sentences that say what was wrong and, where possible, what to do about it.
"""


class GeomindError(Exception):
    """Base class of every error geomind raises on purpose."""


class InputError(GeomindError):
    """A scene or option the user gave cannot be used (not a raster, missing bands, no overlap, ...)."""


class ModalityError(InputError):
    """An unknown modality name, or a modality that cannot be used where it was asked for."""


class WeightsError(GeomindError):
    """Weights cannot be found, downloaded or loaded."""


class WeightsNotFoundError(WeightsError):
    """A checkpoint is not in the local cache and cannot be downloaded (offline, no network)."""


class WeightsMismatchError(WeightsError):
    """A checkpoint's keys or shapes do not match the model (strict loading)."""


class ConfigError(GeomindError):
    """A model configuration or fine-tuning config cannot be honoured."""


class DeviceError(GeomindError):
    """The requested compute device is not available."""


class OutputError(GeomindError):
    """An output cannot be written (already exists without --overwrite, unwritable folder, ...)."""
