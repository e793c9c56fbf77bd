"""ePRO: participants answer their own questionnaires (participant mode on a site tablet, personal links); the answers become CRF entries through the visits services."""
