"""A user's mistake is told to the user; the server log keeps tracebacks for bugs."""
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app_server import running_app
from kd.imagefile import read_image, write


def test_expected_user_errors_leave_no_traceback_in_the_server_log(tmp_path, photo):
    bad, tiny, log = tmp_path / "upload.png", tmp_path / "tiny.png", tmp_path / "server.log"
    bad.write_bytes(b"definitely not an image")
    write(tiny, np.full((1, 1, 3), 128, np.uint8))
    gray_alpha = tmp_path / "la.png"  # a gray photo with transparency is simulated as RGB
    Image.fromarray(np.ascontiguousarray(photo[:96, :128])).convert("LA").save(gray_alpha)
    with running_app("--study", "", log=log) as url:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="not a readable image"):
            client.predict(handle_file(str(bad)), "student", api_name="/sharpen")
        with pytest.raises(Exception, match="at least 32×32"):
            client.predict(handle_file(str(tiny)), "medium", 2, 30, api_name="/simulate")
        degraded = client.predict(handle_file(str(gray_alpha)), "medium", 2, 30, api_name="/simulate")[0]
        assert read_image(degraded).shape == (96, 128, 3)
    said = log.read_text()
    assert "Traceback" not in said, said
