"""Recipes: every step from an empty folder to an AudioLM bundle, resumable (`segue recipe`).

    from segue.recipes import RECIPES, run_recipe

    recipe = RECIPES["smoke"]
    run_recipe(recipe, recipe.make_config(), "runs/smoke", until="codec")

`runner.py` runs steps and keeps their DONE.json markers; `audiolm.py` holds the AudioLM steps,
`config.py` their config (and `start_from`, fine-tuning a bundle); `named.py` the named recipes.
Only the CLI imports this package.
"""

from segue.recipes.audiolm import STEPS
from segue.recipes.config import AudioLMRecipeConfig
from segue.recipes.named import RECIPES
from segue.recipes.runner import (
    DONE_NAME,
    RECIPE_NAME,
    STARTED_NAME,
    Context,
    Recipe,
    RecipeError,
    Step,
    plan,
    run_recipe,
)

__all__ = [
    "DONE_NAME",
    "RECIPES",
    "RECIPE_NAME",
    "STARTED_NAME",
    "STEPS",
    "AudioLMRecipeConfig",
    "Context",
    "Recipe",
    "RecipeError",
    "Step",
    "plan",
    "run_recipe",
]
