"""Hooks trials.build calls upward (edc/hooks.py explains the pattern)."""

from edc.hooks import Hook

# document_downloaded(*, user, kind, document, content, trial): record a download of a PDF made on
# request (here the blank or annotated CRF) in the export download log; provided by trials.exports.
document_downloaded = Hook("document_downloaded", provided_by="trials.exports")
