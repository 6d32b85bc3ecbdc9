"""runjobs's default log handler: whole lines, one write each, no lock; the same format."""

import io
import logging
import threading

from django_bgjobs.management.commands.runjobs import LOG_FORMAT, _Formatter, _LineHandler


def make_logger(name, stream):
    handler = _LineHandler(stream)
    handler.setFormatter(_Formatter(LOG_FORMAT))
    logger = logging.getLogger(f"tests.runjobs_logging.{name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_lines_from_many_threads_are_never_interleaved_when_written_to_a_file(tmp_path):
    # Given: ten threads logging long lines to one file
    path = tmp_path / "worker.log"
    with open(path, "w") as stream:
        logger = make_logger("file", stream)
        payload = "x" * 300

        def work(n):
            for i in range(200):
                logger.info("done thread=%d i=%d %s", n, i, payload)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(10)]

        # When
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then: 2,000 whole lines, each with its own end
    lines = path.read_text().splitlines()
    assert len(lines) == 2000
    assert all(line.endswith(payload) and " INFO tests.runjobs_logging.file: done thread=" in line for line in lines)


def test_formatter_gives_the_standard_formatter_s_output_when_times_differ():
    standard = logging.Formatter(LOG_FORMAT)
    cached = _Formatter(LOG_FORMAT)
    for created in (1_700_000_000.25, 1_700_000_000.75, 1_700_000_001.5, 1_700_003_600.0):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "done %s", ("job",), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000)
        assert cached.format(record) == standard.format(record)


def test_handler_falls_back_to_the_locked_stream_write_when_the_stream_has_no_file_descriptor():
    stream = io.StringIO()
    logger = make_logger("stringio", stream)

    logger.info("done %s", "NoopJob")

    assert stream.getvalue().endswith("INFO tests.runjobs_logging.stringio: done NoopJob\n")
