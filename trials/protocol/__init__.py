"""Protocol: trials as data (trials, sites, arms, criteria, visits, CRF definitions, study roles), the loader, the CRF engine and scores (the bottom layer of trials/)."""
