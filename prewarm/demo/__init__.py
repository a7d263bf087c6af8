"""The one-command demo: controller, gateway and local replicas serving a time-compressed real trace."""
