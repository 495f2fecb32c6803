"""The diffusion config node: which learn_sigma / loss pairs validate and build."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.conftest import compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.diffusion import GaussianDiffusion, build_diffusion


@pytest.mark.parametrize(
    ("overrides", "learn_sigma", "loss"),
    [
        ([], False, "simple"),  # the demo recipe's diffusion (conf/diffusion/recipe.yaml), the default
        (["diffusion=latte"], True, "hybrid"),
        (["diffusion=simple"], False, "simple"),
        (["diffusion=latte", "diffusion.loss=simple"], True, "simple"),
        (["diffusion=vpred", "diffusion.learn_sigma=true"], True, "simple"),
        (["diffusion=latte", "diffusion.learn_sigma=false"], False, "hybrid"),
        (["diffusion.learn_sigma=true"], True, "simple"),
    ],
)
def test_learn_sigma_needs_the_hybrid_loss(
    overrides: list[str], learn_sigma: bool, loss: str, tmp_path: Path
) -> None:
    """A learned variance is trained only by the hybrid loss: learn_sigma with the simple loss fails naming
    both keys and the fix, at validation and in GaussianDiffusion; the hybrid loss without it keeps failing."""
    cfg = compose_config(overrides, run_dir=tmp_path)
    assert (cfg.diffusion.learn_sigma, cfg.diffusion.loss) == (learn_sigma, loss)
    if learn_sigma == (loss == "hybrid"):
        validate_config(cfg)
        diffusion = instantiate(cfg.diffusion)
        assert isinstance(diffusion, GaussianDiffusion)
        assert (diffusion.learn_sigma, diffusion.loss_type) == (learn_sigma, loss)
        return
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    message = str(info.value)
    if learn_sigma:  # learn_sigma with the simple loss: the variance outputs would never get a gradient
        assert info.value.key == "diffusion.learn_sigma", message
        assert message.startswith("diffusion.learn_sigma: true with diffusion.loss=simple"), message
        assert "diffusion.loss=hybrid or diffusion.learn_sigma=false" in message
        arguments = {key: value for key, value in cfg.diffusion.items() if key != "_target_"}
        with pytest.raises(ValueError, match="learn_sigma=True with loss='simple'"):
            build_diffusion(**arguments)  # code that skips validation is stopped by GaussianDiffusion too
    else:
        assert info.value.key == "diffusion.loss", message
