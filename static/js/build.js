// The printable CRF page: its Print button (no inline handler: the CSP allows only our scripts).
document.querySelectorAll("[data-edc-print]").forEach((button) => button.addEventListener("click", () => window.print()));
