from flamenco_worker.cli import run

run()
