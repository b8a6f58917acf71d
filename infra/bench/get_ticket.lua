-- wrk script: GET /v1/tickets/{id} of one existing ticket; TICKET_ID and USER_ID from the env.
wrk.method = "GET"
wrk.path = "/v1/tickets/" .. os.getenv("TICKET_ID")
wrk.headers["X-User-Id"] = os.getenv("USER_ID")
