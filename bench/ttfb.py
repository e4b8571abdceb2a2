"""Time to first byte of streamed chat completions, sequentially (c=1).

Usage: ttfb.py URL KEY MODEL N — prints `RESULT p50_us=… p99_us=…`.
"""

import http.client
import json
import sys
import time
from urllib.parse import urlparse

url, key, model, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
parsed = urlparse(url)
body = json.dumps({"model": model, "stream": True,
                   "messages": [{"role": "user", "content": "Say hello to the benchmark."}]})
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = f"Bearer {key}"

connection = http.client.HTTPConnection(parsed.hostname, parsed.port)
samples = []
for i in range(count + 20):
    start = time.perf_counter()
    connection.request("POST", parsed.path, body=body, headers=headers)
    response = connection.getresponse()
    first = response.read1(1)
    elapsed = time.perf_counter() - start
    assert response.status == 200 and first, (response.status, first)
    response.read()
    if i >= 20:  # warm-up
        samples.append(elapsed)
samples.sort()
p50 = samples[len(samples) // 2] * 1e6
p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6
print(f"RESULT p50_us={p50:.0f} p99_us={p99:.0f}")
