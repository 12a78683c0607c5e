-- bench/post.lua — wrk script for the "post" workload: POST /echo with a 4096-byte body.
wrk.method = "POST"
wrk.body = string.rep("p", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
