"""OpenAI's Responses API (`/v1/responses`) as a surface over the shared pipeline: a request is
translated into the internal chat body (`request`, `items`), answered by any configured model,
and written back as a Response object (`answer`) or its stream of events (`events`); answers are
kept for their owner until they expire (`stored`)."""
