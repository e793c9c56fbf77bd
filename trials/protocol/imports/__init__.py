"""Imports of other systems' study definitions (REDCap, CDISC ODM, ClinicalTrials.gov) into trial/CRF YAML that the loader validates and writes."""
