"""One date format everywhere (the admin's own fields, the dashboard and our displays), instead
of Django's English "Dec. 2, 2026, 7:37 p.m." beside ISO dates: `2026-12-02 19:37:05 UTC`.
https://docs.djangoproject.com/en/stable/topics/i18n/formatting/#creating-custom-format-files
"""

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
MONTH_DAY_FORMAT = "F j"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1
