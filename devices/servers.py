"""Which device classes each simulated device server hosts."""

from __future__ import annotations

from .awkward import SimAwkward
from .beam import SimBeamCurrent
from .camera import SimCamera
from .counter import SimCounter
from .environment import SimThermocouple, SimVacuumGauge
from .faulty import SimFaulty
from .motor import SimMotor
from .spectrometer import SimSpectrometer
from .storm import SimEventStorm

SERVER_CLASSES: dict[str, tuple[type, ...]] = {
    "SimMotor": (SimMotor,),
    "SimCounter": (SimCounter,),
    "SimBeamCurrent": (SimBeamCurrent,),
    "SimEnvironment": (SimThermocouple, SimVacuumGauge),
    "SimSpectrometer": (SimSpectrometer,),
    "SimCamera": (SimCamera,),
    "SimFaulty": (SimFaulty,),
    "SimEventStorm": (SimEventStorm,),
    "SimAwkward": (SimAwkward,),
}
