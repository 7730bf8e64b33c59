"""The AMOS agent graph on google-adk: a coordinator that asks a read-only diagnosis agent
for a typed `Diagnosis` and a remediation agent to apply only what was proposed.

The model behind them is chosen by configuration (`models.build_model`): Gemini, any
OpenAI-compatible endpoint, or the deterministic offline rules (`offline.OfflineLlm`);
all three run through the same graph, tools and policy. `session.run_session` runs one
incident within hard budgets and never raises.
"""
