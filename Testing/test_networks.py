import torch

from SpineSegDiffLib.networks import NetworkConfig, SpineSegDiffNet, timestep_embedding


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
