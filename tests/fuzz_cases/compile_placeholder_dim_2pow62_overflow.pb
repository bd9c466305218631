graphc"0.1.02H
!
x

€€€€€€€€@"
<string>#
relurelux"relu:
<string>