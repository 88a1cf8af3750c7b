"""What the service module sets up for every worker process."""
import subprocess
import sys


def test_the_idna_codec_is_loaded_with_the_service_module():
    """Werkzeug encodes every request's host with the idna codec; its
    first, lazy import must not happen in several request threads at once
    (a failed lookup is cached for good: every later request is a 500)."""
    code = ('import sys, microflack_common.service; '
            'print("encodings.idna" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == 'True', result.stderr
