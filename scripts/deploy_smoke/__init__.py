"""The smokes of scripts/deploy-smoke, which puts scripts/ on sys.path and imports them as deploy_smoke."""
