"""``synthetic_tooluse``: graded tool calls in the tool-use task's answer format and scorer.

A small catalogue of APIs with typed arguments. Argument names are unique across the catalogue, so the
reference's merged-dict reward checks every argument of every call (no call can hide another's key).

====== ==================================================================== ===========
level  what the question needs                                              tools shown
====== ==================================================================== ===========
1      one call, one argument                                               1
2      one call, two arguments (strings, or an int to copy)                 2
3      one call, three arguments incl. an int                               3
4      two calls, two or three arguments in all                             4
5      two calls with four arguments in all, or three one-argument calls    5
====== ==================================================================== ===========

Levels 2 and 3 draw from as many APIs each (7), so that the number of arguments, not the number of distinct
request shapes to learn, sets their difficulty: with only 2 three-argument APIs, level 3 was easier than level 2.

The tools shown besides the needed ones are distractors, preferring look-alikes (``get_weather`` next to
``get_forecast``, ``set_volume`` next to ``play_music``) so that picking the right name and argument names
matters. Integers must be written as JSON numbers (``"seats": 2``, not ``"2"``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

SYSTEM_PROMPT = "Call the tools. For each call write:\nAction: tool name\nAction Input: JSON arguments"
NUM_LEVELS = 5

CITIES = ("Paris", "Rome", "Tokyo", "Lima", "Oslo", "Cairo", "Delhi", "Berlin", "Madrid", "Dublin", "Seoul",
          "Sydney")
TOPICS = ("sports", "music", "science", "art", "travel", "food", "games", "health")
DISHES = ("soup", "pasta", "rice", "salad", "cake", "bread", "curry", "pizza")
NAMES = ("Ann", "Bob", "Eve", "Tom", "Mia", "Sam", "Leo", "Zoe")
SUBJECTS = ("lunch", "work", "school", "rent", "sports", "travel")
WORDS = ("hello", "water", "book", "house", "friend", "apple", "sun", "dog")
LANGS = ("French", "Spanish", "German", "Italian", "Japanese")
ARTISTS = ("Queen", "Adele", "Bach", "Mozart", "Drake", "Shakira")
SYMBOLS = ("AAPL", "MSFT", "TSLA", "AMZN", "IBM")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "INR")
UNITS = ("C", "F")
MEALS = ("breakfast", "lunch", "dinner")
CARS = ("small", "van", "truck")


@dataclass(frozen=True)
class Arg:
    """One typed argument: its name, how it is shown in the signature, and how values are drawn."""

    name: str
    kind: str  # "str", "int" or "C|F" style enums shown as is
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Api:
    """A tool: name, arguments, phrasings of a request (format fields are the argument names), look-alikes."""

    name: str
    args: tuple[Arg, ...]
    phrasings: tuple[str, ...]
    similar: tuple[str, ...] = ()

    def signature(self) -> str:
        shown = [a.name if a.kind == "str" else f"{a.name}: {a.kind}" for a in self.args]
        return f"{self.name}({', '.join(shown)})"


def _ints(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo, hi + 1))


CATALOGUE: dict[str, Api] = {api.name: api for api in (
    Api("get_time", (Arg("city", "str", CITIES),),
        ("What time is it in {city}?", "Tell me the time in {city}."), ("set_alarm",)),
    Api("get_news", (Arg("topic", "str", TOPICS),), ("Show news about {topic}.", "Any news on {topic}?"),
        ("get_stock",)),
    Api("find_recipe", (Arg("dish", "str", DISHES),), ("Find a recipe for {dish}.", "How do I cook {dish}?"),
        ("translate",)),
    Api("set_volume", (Arg("level", "int", _ints(1, 99)),),
        ("Set the volume to {level}.", "Change the volume to {level}."), ("play_music",)),
    Api("call_friend", (Arg("name", "str", NAMES),), ("Call {name}.", "Phone {name} now."), ("send_email",)),
    Api("open_page", (Arg("page", "int", _ints(1, 99)),), ("Open page {page}.", "Go to page {page}."),
        ("get_news",)),
    Api("set_timer", (Arg("minutes", "int", _ints(1, 120)),),
        ("Set a timer for {minutes} min.", "Start a {minutes} min timer."), ("set_alarm",)),
    Api("get_weather", (Arg("town", "str", CITIES), Arg("unit", "C|F", UNITS)),
        ("What is the weather in {town} in {unit}?", "Weather for {town} in {unit} please."),
        ("get_forecast", "get_time")),
    Api("get_forecast", (Arg("place", "str", CITIES), Arg("days", "int", _ints(2, 14))),
        ("Give the {days} day forecast for {place}.", "Forecast {place} for {days} days."), ("get_weather",)),
    Api("set_alarm", (Arg("hour", "int", _ints(1, 12)), Arg("minute", "int", _ints(0, 59))),
        ("Set an alarm for {hour}:{minute:02d}.", "Wake me at {hour}:{minute:02d}."), ("get_time",)),
    Api("send_email", (Arg("to", "str", NAMES), Arg("subject", "str", SUBJECTS)),
        ("Email {to} about {subject}.", "Send {to} an email about {subject}."), ("call_friend",)),
    Api("translate", (Arg("word", "str", WORDS), Arg("lang", "str", LANGS)),
        ("Translate {word} into {lang}.", "Say {word} in {lang}."), ("find_recipe",)),
    Api("play_music", (Arg("artist", "str", ARTISTS), Arg("volume", "int", _ints(1, 99))),
        ("Play {artist} at volume {volume}.", "Put on {artist}, volume {volume}."), ("set_volume",)),
    Api("get_stock", (Arg("symbol", "str", SYMBOLS), Arg("weeks", "int", _ints(1, 52))),
        ("Show {symbol} stock for {weeks} weeks.", "Get {weeks} weeks of {symbol} prices."), ("get_news",)),
    Api("convert_money", (Arg("amount", "int", _ints(2, 999)), Arg("source", "str", CURRENCIES),
                          Arg("target", "str", CURRENCIES)),
        ("Convert {amount} {source} to {target}.", "How much is {amount} {source} in {target}?"), ()),
    Api("book_flight", (Arg("origin", "str", CITIES), Arg("dest", "str", CITIES), Arg("seats", "int", _ints(1, 9))),
        ("Book {seats} seats from {origin} to {dest}.", "Fly {seats} people from {origin} to {dest}."),
        ("get_weather",)),
    Api("send_money", (Arg("payee", "str", NAMES), Arg("cash", "int", _ints(2, 999)),
                       Arg("currency", "str", CURRENCIES)),
        ("Send {payee} {cash} {currency}.", "Pay {cash} {currency} to {payee}."), ("convert_money", "call_friend")),
    Api("book_hotel", (Arg("stay", "str", CITIES), Arg("nights", "int", _ints(1, 14)),
                       Arg("guests", "int", _ints(2, 6))),
        ("Book a hotel in {stay} for {guests} guests and {nights} nights.",
         "Find {nights} nights in {stay} for {guests} guests."), ("book_flight", "get_forecast")),
    Api("reserve_table", (Arg("diner", "str", NAMES), Arg("people", "int", _ints(2, 12)),
                          Arg("meal", "str", MEALS)),
        ("Reserve {meal} for {people} people as {diner}.", "Book a table for {people} at {meal}, name {diner}."),
        ("find_recipe",)),
    Api("order_food", (Arg("food", "str", DISHES), Arg("count", "int", _ints(2, 9)), Arg("address", "str", CITIES)),
        ("Order {count} {food} to {address}.", "Deliver {count} portions of {food} in {address}."),
        ("find_recipe", "reserve_table")),
    Api("rent_car", (Arg("pickup", "str", CITIES), Arg("rental_days", "int", _ints(1, 30)), Arg("car", "str", CARS)),
        ("Rent a {car} car in {pickup} for {rental_days} days.", "Hire a {car} in {pickup}, {rental_days} days."),
        ("book_flight", "book_hotel")),
)}

ONE_ARG = tuple(n for n, api in CATALOGUE.items() if len(api.args) == 1)
TWO_ARGS = tuple(n for n, api in CATALOGUE.items() if len(api.args) == 2)
THREE_ARGS = tuple(n for n, api in CATALOGUE.items() if len(api.args) == 3)


@dataclass(frozen=True)
class ToolQuestion:
    """A generated request: its text, the tools listed in the prompt, and the gold calls in order."""

    question: str
    tools: tuple[str, ...]
    calls: tuple[tuple[str, dict[str, Any]], ...]


def _draw_call(api: Api, rng: random.Random) -> tuple[str, tuple[str, dict[str, Any]]]:
    """A request sentence for ``api`` and its gold call; distinct-valued pairs (e.g. two cities) are redrawn."""
    while True:
        args = {a.name: rng.choice(a.values) for a in api.args}
        strings = [v for v in args.values() if isinstance(v, str)]
        if len(strings) == len(set(strings)):  # "from Rome to Rome" / "EUR to EUR" would be odd
            break
    return rng.choice(api.phrasings).format(**args), (api.name, args)


def _tool_list(needed: list[str], n_shown: int, rng: random.Random) -> tuple[str, ...]:
    """``needed`` plus distractors (look-alikes first) up to ``n_shown`` tools, shuffled."""
    shown = list(dict.fromkeys(needed))
    look_alikes = [s for name in needed for s in CATALOGUE[name].similar if s not in shown]
    rng.shuffle(look_alikes)
    others = [n for n in CATALOGUE if n not in shown and n not in look_alikes]
    rng.shuffle(others)
    for name in look_alikes + others:
        if len(shown) >= n_shown:
            break
        if name not in shown:
            shown.append(name)
    rng.shuffle(shown)
    return tuple(shown)


def sample_question(level: int, rng: random.Random) -> ToolQuestion:
    """One request of ``level`` (1..5), drawn with ``rng`` (see the module table)."""
    if level == 1:
        apis = [rng.choice(ONE_ARG)]
    elif level == 2:
        apis = [rng.choice(TWO_ARGS)]
    elif level == 3:
        apis = [rng.choice(THREE_ARGS)]
    elif level == 4:
        apis = [rng.choice(ONE_ARG), rng.choice(ONE_ARG + TWO_ARGS)]
        while apis[1] == apis[0]:
            apis[1] = rng.choice(ONE_ARG + TWO_ARGS)
    elif level == 5:
        shape = rng.randrange(3)  # four arguments over two calls (3 + 1 or 2 + 2), or three one-argument calls
        if shape == 0:
            apis = [rng.choice(THREE_ARGS), rng.choice(ONE_ARG)]
        elif shape == 1:
            apis = rng.sample(TWO_ARGS, 2)
        else:
            apis = rng.sample(ONE_ARG, 3)
    else:
        raise ValueError(f"level must be in 1..{NUM_LEVELS}, got {level}")
    rng.shuffle(apis)
    sentences, calls = zip(*(_draw_call(CATALOGUE[name], rng) for name in apis), strict=True)
    return ToolQuestion(" ".join(sentences), _tool_list(list(apis), level, rng), tuple(calls))


def format_user_message(question: ToolQuestion) -> str:
    """``Tools:`` one signature per line, then ``Question: ...``."""
    tools = "\n".join(CATALOGUE[name].signature() for name in question.tools)
    return f"Tools:\n{tools}\nQuestion: {question.question}"
