# escape=`

FROM mcr.example/windows
COPY testfile.txt c:\
RUN dir c:\ `
    && echo done
