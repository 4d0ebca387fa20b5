#!/bin/sh
# A data-entry script as written against django-crunch 0.1's command line
# (CRUNCH_URL and CRUNCH_TOKEN set; STORAGE_SETTINGS names a JSON settings file).
set -e

crunch add-project "Survey 2021" --description "Sites visited in 2021" --details "Two *transects* per site."
crunch add-dataset survey-2021 "Site 1" --description "The first site"
crunch add-item survey-2021:site-1 "Transect A"
crunch add-char-attribute survey-2021:site-1 observer "Ada Lovelace"
crunch add-integer-attribute survey-2021:site-1 quadrats 12
crunch add-float-attribute survey-2021:site-1 depth 3.5
crunch add-boolean-attribute survey-2021:site-1 dry true
crunch add-date-attribute survey-2021:site-1 visited 2021-05-01
crunch add-datetime-attribute survey-2021:site-1 started "01/05/2021 09:30" --format "%d/%m/%Y %H:%M"
crunch add-url-attribute survey-2021:site-1 map https://example.org/site-1
crunch add-filesize-attribute survey-2021:site-1:transect-a raw 1048576
crunch add-lat-long-attribute survey-2021:site-1:transect-a start -37.8136 144.9631
crunch add-char-attribute survey-2021 funder "The Trust" --no-verbose
crunch files survey-2021:site-1 "$STORAGE_SETTINGS"
