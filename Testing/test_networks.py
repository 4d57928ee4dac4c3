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


def test_blocks_match_monai_basic_unet_blocks():
    """Same parameter names and the same outputs as MONAI's TwoConv / Down / UpCat from the same weights."""
    from monai.networks.nets import basic_unet

    from SpineSegDiffLib.networks import UpCat, down, two_conv

    act, norm = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), ("instance", {"affine": True})
    torch.manual_seed(0)
    for dims, shape in ((2, (16, 24)), (3, (8, 16, 16))):
        pairs = [
            (two_conv(dims, 3, 5), basic_unet.TwoConv(dims, 3, 5, act, norm, True), (3,)),
            (down(dims, 3, 5), basic_unet.Down(dims, 3, 5, act, norm, True), (3,)),
        ]
        for ours, theirs, (channels,) in pairs:
            theirs.load_state_dict(ours.state_dict(), strict=True)
            x = torch.randn(2, channels, *shape)
            assert torch.allclose(ours.eval()(x), theirs.eval()(x), atol=1e-6)
        ours_up = UpCat(dims, 8, 4, 4, halves=True)
        theirs_up = basic_unet.UpCat(dims, 8, 4, 4, act, norm, True, halves=True)
        theirs_up.load_state_dict(ours_up.state_dict(), strict=True)
        x, skip = torch.randn(2, 8, *[s // 2 for s in shape]), torch.randn(2, 4, *shape)
        ours_out = ours_up.convs(torch.cat([skip, ours_up.upsample(x)], dim=1))
        assert torch.allclose(ours_out, theirs_up.eval()(x, skip), atol=1e-6)


def test_importing_the_network_does_not_import_monai():
    import subprocess
    import sys

    code = "import sys, SpineSegDiffLib.networks, SpineSegDiffLib.sampling; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
