import pytest
import torch
from conftest import REPO

from SpineSegDiffLib.inference.networks import NetworkConfig, SpineSegDiffNet, timestep_embedding
from SpineSegDiffLib.inference.refiner import load_network
from SpineSegDiffLib.modelset.folder import open_model_folder


def test_2d_and_3d_share_the_code_and_keep_shapes():
    for dims, shape in ((2, (32, 48)), (3, (16, 32, 32))):
        net = SpineSegDiffNet(NetworkConfig(spatial_dims=dims, features=(4, 4, 8, 8, 16, 4)))
        x_t, image = torch.randn(3, 4, *shape), torch.randn(3, 1, *shape)
        assert net(x_t, torch.tensor([0, 5, 9]), image).shape == (3, 4, *shape)


def test_image_features_broadcast_over_samples():
    net = SpineSegDiffNet(NetworkConfig(features=(4, 4, 8, 8, 16, 4))).eval()
    image = torch.randn(1, 1, 32, 32)
    x_t = torch.randn(3, 4, 32, 32)
    t = torch.tensor([2, 2, 2])
    with torch.no_grad():
        once = net.denoiser(x_t, t, image, net.image_encoder(image))
        repeated = net(x_t, t, image.expand(3, 1, 32, 32))
    assert torch.allclose(once, repeated, atol=1e-5)


def test_time_embedding_distinguishes_steps():
    e = timestep_embedding(torch.tensor([0, 1, 29]))
    assert e.shape == (3, 128)
    assert not torch.allclose(e[0], e[1])


@pytest.mark.parametrize("name", ["spinesegdiff-2d-t2", "spinesegdiff-3d-t2"])
def test_bundled_weights_load_into_monai_basic_unet_blocks(name):
    from monai.networks.nets import basic_unet

    net = load_network(open_model_folder(REPO / "Resources" / "Models" / name, "diffusion"), torch.device("cpu"))
    assert isinstance(net.image_encoder.conv_0, basic_unet.TwoConv)
    assert all(isinstance(down, basic_unet.Down) for down in net.image_encoder.downs)
    assert all(isinstance(up.up, basic_unet.UpCat) for up in net.denoiser.ups)


def test_importing_the_diffusion_modules_does_not_import_monai():
    """MONAI comes in when a network or scheduler is built, not on import."""
    import subprocess
    import sys

    modules = ("inference.networks, inference.sampling, inference.refiner, inference.volumetric, modelset.settings, "
               "modelset.model_set")
    imports = ", ".join(f"SpineSegDiffLib.{name}" for name in modules.split(", "))
    code = f"import sys, {imports}; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
