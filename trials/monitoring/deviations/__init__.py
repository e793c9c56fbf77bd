"""Protocol deviations: proposed (a visit out of its window), recorded by the site, confirmed or dismissed by the monitor."""
