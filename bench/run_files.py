"""What the table benches share: reading a run's JSON files while runs may still be writing them."""
import json
import os


def load_json(path):
  """The JSON object in `path`, or None when it does not exist yet or is half written."""
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    try:
      return json.load(f)
    except json.JSONDecodeError:   # still being written
      return None
