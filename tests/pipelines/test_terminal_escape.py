"""What `sslpipe run` prints about a batch whose name and findings carry terminal control sequences: the run
summary (_describe) and the console logger show them escaped, and a value cannot forge a line of its own."""

import logging

from pipelines.console_log import _TerminalSafe
from pipelines.runner import FailedCheck, RunOutcome, _describe

BATCH = "b\x1b[2J\x1b]0;pwned\x07\u202egpj.exe"
FINDING = "domain=\x1b[32mok\x1b[0m 10.0% < 20%\r[global] ok: all good\nfake line"


def test_describe_escapes_batch_names_findings_and_errors():
    o = RunOutcome("ingest_batch", BATCH, "0123456789abcdef", False, ["raw_images"],
                   [FailedCheck("bias_report", "group_representation", True, FINDING)], [f"step: bad \x9b31m{BATCH}"])
    text = _describe(o)
    assert not any(c in text for c in "\x1b\x07\r\x9b\u202e")
    lines = text.split("\n")
    assert len(lines) == 3 and all(line.startswith("[b\\x1b[2J") for line in lines)
    assert "domain=\\x1b[32mok\\x1b[0m 10.0% < 20%\\r[global] ok: all good\\nfake line" in lines[1]
    assert "\\u202egpj.exe" in lines[0]


def test_console_messages_keep_their_lines_and_escape_the_rest():
    fmt = _TerminalSafe("    %(levelname)s %(message)s")
    rec = logging.LogRecord("sslpipe", logging.WARNING, __file__, 1, f"bias_report[{BATCH}] {FINDING}", (), None)
    out = fmt.format(rec)
    assert not any(c in out for c in "\x1b\x07\r\u202e")
    first, second = out.split("\n")
    assert first.startswith("    WARNING bias_report[b\\x1b[2J") and second == "        fake line"  # indented


def test_registration_lines_escape_folder_names(tmp_path):
    """`skipping landing/...` and `registered N new batch(es): ...` print folder names from the landing folder:
    escaped too (a raw ESC, newline and U+202E reached the terminal)."""
    from imagefiles import jpeg_bytes, write
    from pipelines.runner import register_batches
    from pipelines.settings import Settings, prepare_instance

    write(tmp_path / "landing" / "e\x1b7x\u202e" / "a.jpg", jpeg_bytes(1))
    write(tmp_path / "landing" / "b2\x1b[31mRED\nline2" / "a.jpg", jpeg_bytes(2))  # a newline: skipped
    s = Settings.from_env(home=tmp_path / "home", landing=tmp_path / "landing", eval_dir=tmp_path / "eval")
    lines: list[str] = []
    present = register_batches(s, prepare_instance(s), lines.append)
    assert present == ["e\x1b7x\u202e"]
    text = "\n".join(lines)
    assert not any(c in text for c in "\x1b\u202e") and len(text.split("\n")) == 2
    assert "registered 1 new batch(es): e\\x1b7x\\u202e" in text and "skipping landing/b2\\x1b[31mRED\\nline2" in text


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    """`sslpipe ... | head -1`: the reader goes away; no BrokenPipeError traceback on stderr."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = ("import sys; from pipelines.cli import main\n"
            "sys.exit(main(['verify', '--home', sys.argv[1]]))")
    home = tmp_path / "home"
    (home / "manifests").mkdir(parents=True)
    for i in range(4000):  # many batches: more output than a pipe holds
        (home / "manifests" / f"batch-{i:05d}").mkdir()
    p = subprocess.Popen([sys.executable, "-c", code, str(home)], cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()  # as `head` does once it has its lines
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]
