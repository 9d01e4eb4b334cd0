"""The function catalogue: releases recorded after deploy, and the queries behind the API and pages."""
