from streampii.cli import run

run()
