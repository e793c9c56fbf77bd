"""The casebook as the monitor and the site see it: the participant's dashboard (visits, CRFs,
locks, signatures and queries on one page) and the staff admin of participants, casebooks and AEs."""
