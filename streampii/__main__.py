from streampii.cli import app

app(prog_name="streampii")
