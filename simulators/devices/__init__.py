"""Vectorised device models: energy, mobility and weather, all behind one contract (base.Model)."""

from simulators.devices.base import Block, DayTotals, Model, ModelContext
from simulators.devices.energy import (
    building_meter,
    ev_charger,
    heat_meter,
    pv_inverter,
    street_lighting,
)
from simulators.devices.mobility import bike_counter, bus_passengers, shared_trips, traffic_counter
from simulators.devices.station import weather_station
from simulators.devices.weather import CityWeather, city_weather

MODELS: dict[str, Model] = {
    "building_meter": building_meter,
    "heat_meter": heat_meter,
    "ev_charger": ev_charger,
    "pv_inverter": pv_inverter,
    "street_lighting": street_lighting,
    "traffic_counter": traffic_counter,
    "bike_counter": bike_counter,
    "shared_trips": shared_trips,
    "bus_passengers": bus_passengers,
    "weather_station": weather_station,
}

__all__ = ["MODELS", "Block", "CityWeather", "DayTotals", "Model", "ModelContext", "city_weather"]
