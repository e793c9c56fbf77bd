"""The trial apps, each importing only the layers below it (docs/architecture.md, *Layers*)."""
