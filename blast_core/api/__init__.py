"""HTTP as plain data: the routes (the job API, NCBI's URL API, the web page), written once
and served by the function app and by `serve`."""
