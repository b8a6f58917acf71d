-- wrk script: POST /v1/tickets as one of 1000 users (user id rotates per request).
local n = 0
request = function()
  n = n + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-User-Id"] = "bench-" .. (n % 1000),
  }
  return wrk.format("POST", "/v1/tickets", headers, '{"title":"wrk baseline","description":"load"}')
end
