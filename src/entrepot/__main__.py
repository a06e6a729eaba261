from entrepot.cli import app

app()
