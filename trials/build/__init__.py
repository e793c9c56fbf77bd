"""Study build: a data manager uploads a trial/CRF file or an import, sees the amendment's impact on live data and applies it through the loader."""
