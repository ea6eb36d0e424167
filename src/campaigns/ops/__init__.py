"""The service layer: one module per operation (init, submit, reconcile, status, retry,
cancel, qa, estimate, export), each taking a `Context` built once per command.
`CampaignManager` (`ops.manager`) is a thin facade over them; nothing imports it back."""
