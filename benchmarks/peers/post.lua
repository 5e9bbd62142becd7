-- wrk script of the gateway peer benchmark: every request is the same POST.
-- The JSON body comes from the BENCH_BODY environment variable; the headers (content-type,
-- authorization) come from wrk -H, so they are not set here (twice is a 400 for aiohttp).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
